"""A whole model before and after `convbench.optimize`: timed end to end, in interleaved rounds.

`compare_models` times the original and the optimized model on the same input with the
ordinary timing engine (`measure_interleaved`: warmup, block sizing, adaptive stopping), the
two alternating in every round so that drift falls on both alike, and reports the speedup
(original / optimized) with its Hodges–Lehmann/Moses interval and the Mann–Whitney p — the
statistics `convbench compare` uses — and the largest output difference between the two.

The rounds are watched as per-layer rows are (`convbench.measure.task`): the device's
disturbance probe sets disturbed samples apart (schedstat on the CPU, the SM clock on CUDA),
the host's pace is read between rounds on the CPU, and each comparison carries the flags of
its two measurements (`convbench.measure.flags`: disturbed, too few undisturbed samples, off
pace) — a decision about the model must not rest on a flagged one. Steadiness is judged on
what is compared: a comparison is *unsteady* when the speedup moved by more than
``max_drift`` between stretches of its rounds (`ratio_drift`). A host that changes pace under
both models alike — the drift interleaving is there to cancel — moves each model's median but
not their ratio; a change that slows one model more than the other moves the ratio.

``inference`` is ``model(x)`` in eval mode under `torch.no_grad()`. ``train`` is one
training step: forward, ``loss.backward()`` (loss: the mean square of the output) and an
SGD step, each model with its own optimizer, so that both take the same steps.

`compare_variants` times several optimized versions of one model (``tune``'s memory-format
variants) against the original in the same interleaved rounds, so that they can also be
compared with each other.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from convbench.analysis import stats
from convbench.measure.clocks import Clock, clock_for
from convbench.measure.config import TimingConfig
from convbench.measure.disturbance import Probe, cpu_probe
from convbench.measure.engine import Measurement, measure_interleaved, stretch_drift
from convbench.measure.flags import flag_reasons, probe_rule
from convbench.measure.pace import PaceReference
from convbench.measure.pace import reference as pace_reference
from convbench.measure.probes.accuracy import accuracy

MODES = ("inference", "train")
ORIGINAL = "original"
#: How a whole model is timed unless told otherwise: half a second of warmup (a model's first
#: calls allocate, pick kernels, start threads), at least 10 samples, 10 s per model and mode.
DEFAULT_TIMING = TimingConfig(warmup_s=0.5, min_samples=10, max_time_s=10.0)


def timing_for(max_time_s: float) -> TimingConfig:
    """`DEFAULT_TIMING` with ``max_time_s`` per model and mode (``--e2e-time``), its warm-up
    per model at most a tenth of that: a short budget stays short (1 s: 0.1 s of warm-up per
    model, not 0.5 s), a long one keeps the half second."""
    warmup_s = min(DEFAULT_TIMING.warmup_s, max_time_s / 10)
    return replace(DEFAULT_TIMING, max_time_s=max_time_s, warmup_s=warmup_s)


@dataclass(frozen=True)
class EndToEnd:
    """One mode's comparison; times are medians in ms, ``speedup`` = original / optimized.
    ``flags``: why the evidence is not to be trusted, each naming the model it concerns
    (``original: off pace: …``); empty when neither measurement was flagged."""

    mode: str
    original_ms: float
    optimized_ms: float
    speedup: float
    ci_low: float
    ci_high: float
    p_value: float
    max_rel_diff: float
    n_samples: int
    variant: str = "tuned"
    samples_ms: tuple[float, ...] = field(default=(), repr=False, compare=False)
    flags: tuple[str, ...] = ()
    #: A compiled variant's compile time in this mode (its first call), in seconds.
    compile_s: float | None = None
    #: This variant against ``torch.compile`` of the original, from the same rounds
    #: (compiled original / this; > 1: faster than it), with its 95% interval; None where
    #: the compiled original was not timed.
    vs_compiled: tuple[float, float, float] | None = None

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict:
        """The record (decisions file, store), without the samples."""
        record = dict(self.__dict__)
        del record["samples_ms"]
        record["flags"] = list(self.flags)
        return record


def _step(model: nn.Module, x: torch.Tensor, optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    model(x).float().square().mean().backward()
    optimizer.step()


def compare_models(
    original: nn.Module,
    optimized: nn.Module,
    x: torch.Tensor,
    mode: str = "inference",
    config: TimingConfig | None = None,
) -> EndToEnd:
    """Time ``original`` against ``optimized`` on ``x`` (see the module docstring)."""
    return compare_variants(original, {"tuned": optimized}, x, mode, config)["tuned"]


@contextlib.contextmanager
def _watchers(
    device: torch.device, usual_pace_us: float | None
) -> Iterator[tuple[Probe | None, PaceReference | None]]:
    """The disturbance probe and pace reference per-layer rows on ``device`` are timed with
    (`convbench.measure.task`): schedstat (or CPU time) and the host pace, against
    ``usual_pace_us`` where known, on the CPU; the SM clock, through the NVML sampler, on
    CUDA."""
    if device.type == "cpu":
        yield cpu_probe(), pace_reference(usual_pace_us)
    elif device.type == "cuda":
        from convbench.measure.probes import WindowSampler

        with WindowSampler(device, cpu_interval_s=None) as sampler:
            nvml = sampler.nvml_sampler
            yield (nvml.clock_probe() if nvml is not None else None), None
    else:
        yield None, None


def _functions(models: list[nn.Module], x: torch.Tensor, mode: str) -> list:
    """What one sample of each model calls: an inference or a training step."""
    if mode == "inference":

        def run(model):
            def fn():
                with torch.no_grad():
                    return model(x)

            return fn

        return [run(model) for model in models]
    fns = []
    for model in models:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
        fns.append(lambda model=model, optimizer=optimizer: _step(model, x, optimizer))
    return fns


def compare_variants(
    original: nn.Module,
    variants: Mapping[str, nn.Module],
    x: torch.Tensor,
    mode: str = "inference",
    config: TimingConfig | None = None,
    *,
    clock: Clock | None = None,
    probe: Probe | None = None,
    pace: PaceReference | None = None,
    usual_pace_us: float | None = None,
) -> dict[str, EndToEnd]:
    """Time ``original`` and every one of ``variants`` (name -> optimized model) on ``x`` in
    the same interleaved rounds; each variant's `EndToEnd` against the original, by name.

    ``usual_pace_us``: the machine's usual reading of the pace reference (from the store),
    the baseline the rounds' pace is judged against; None: this process's readings.
    ``clock``, ``probe`` and ``pace`` replace the device's own (`clock_for`, `_watchers`):
    tests script them."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if not variants:
        raise ValueError("variants: nothing to compare")
    config = config or DEFAULT_TIMING
    clock = clock or clock_for(x.device)
    models = [original, *variants.values()]
    for model in models:
        model.eval()
    with torch.no_grad():
        expected = original(x)
        diffs = [accuracy(model(x), expected).rel_err for model in models[1:]]
    fns = _functions(models, x, mode)
    with _watchers(x.device, usual_pace_us) as (own_probe, own_pace):
        probe = own_probe if probe is None else probe
        pace = own_pace if pace is None else pace
        base, *timed = measure_interleaved(fns, config, clock, probe=probe, pace=pace)
    rule = probe_rule(probe, config.max_lost)
    base_flags = _flags(ORIGINAL, base, rule, config)
    results = {}
    for name, m, diff in zip(variants, timed, diffs, strict=True):
        ratio = stats.ratio_ci(base.samples_ms, m.samples_ms, config.confidence)
        results[name] = EndToEnd(
            mode=mode,
            original_ms=base.median_ms,
            optimized_ms=m.median_ms,
            speedup=ratio.ratio,
            ci_low=ratio.ci_low,
            ci_high=ratio.ci_high,
            p_value=stats.mannwhitney_p(base.samples_ms, m.samples_ms),
            max_rel_diff=diff,
            n_samples=min(base.n_samples, m.n_samples),
            variant=name,
            samples_ms=tuple(m.samples_ms),
            flags=base_flags + _flags(name, m, rule, config) + _unsteady(name, base, m, config),
        )
    return results


def _flags(name: str, m: Measurement, rule: str, config: TimingConfig) -> tuple[str, ...]:
    """The flags of one model's measurement, but for its own drift (`ratio_drift` judges the
    comparison's)."""
    steady = replace(m, unsteady=False)
    return tuple(f"{name}: {r}" for r in flag_reasons(steady, rule, config.floor_samples))


def ratio_drift(base: Measurement, m: Measurement) -> float:
    """How far the speedup of ``m`` over ``base`` moved during their interleaved rounds: each
    round's ratio of the two models' medians in it (base / m), in round order, and the
    `stretch_drift` of those ratios (0 where too few rounds hold both)."""
    ours, theirs = _round_medians(base), _round_medians(m)
    return stretch_drift([ours[r] / theirs[r] for r in sorted(ours) if theirs.get(r)])


def _round_medians(m: Measurement) -> dict[int, float]:
    """The median of ``m``'s samples in each round it sampled in; empty where its samples
    carry no rounds (nothing clean: the disturbed ones)."""
    if len(m.rounds) != len(m.samples_ms):
        return {}
    by_round: dict[int, list[float]] = {}
    for r, sample in zip(m.rounds, m.samples_ms, strict=True):
        by_round.setdefault(r, []).append(sample)
    return {r: statistics.median(samples) for r, samples in by_round.items()}


def _unsteady(name: str, base: Measurement, m: Measurement, config: TimingConfig) -> tuple:
    drift = ratio_drift(base, m)
    if drift <= config.max_drift:
        return ()
    return (f"{name}: unsteady: its speedup moved {drift:.0%} between stretches of the rounds",)
