"""A whole model before and after `convbench.optimize`: timed end to end, in interleaved rounds.

`compare_models` times the original and the optimized model on the same input with the
ordinary timing engine (`measure_interleaved`: warmup, block sizing, adaptive stopping), the
two alternating in every round so that drift falls on both alike, and reports the speedup
(original / optimized) with its Hodges–Lehmann/Moses interval and the Mann–Whitney p — the
statistics `convbench compare` uses — and the largest output difference between the two.

``inference`` is ``model(x)`` in eval mode under `torch.no_grad()`. ``train`` is one
training step: forward, ``loss.backward()`` (loss: the mean square of the output) and an
SGD step, each model with its own optimizer, so that both take the same steps.

`compare_variants` times several optimized versions of one model (``tune``'s memory-format
variants) against the original in the same interleaved rounds, so that they can also be
compared with each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from convbench.analysis import stats
from convbench.measure.clocks import clock_for
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure_interleaved
from convbench.measure.probes.accuracy import accuracy

MODES = ("inference", "train")


@dataclass(frozen=True)
class EndToEnd:
    """One mode's comparison; times are medians in ms, ``speedup`` = original / optimized."""

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

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def to_dict(self) -> dict:
        """The record (decisions file, store), without the samples."""
        record = dict(self.__dict__)
        del record["samples_ms"]
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


def compare_variants(
    original: nn.Module,
    variants: Mapping[str, nn.Module],
    x: torch.Tensor,
    mode: str = "inference",
    config: TimingConfig | None = None,
) -> dict[str, EndToEnd]:
    """Time ``original`` and every one of ``variants`` (name -> optimized model) on ``x`` in
    the same interleaved rounds; each variant's `EndToEnd` against the original, by name."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if not variants:
        raise ValueError("variants: nothing to compare")
    config = config or TimingConfig(warmup_s=0.5, min_samples=10, max_time_s=10.0)
    clock = clock_for(x.device)
    models = [original, *variants.values()]
    for model in models:
        model.eval()
    with torch.no_grad():
        expected = original(x)
        diffs = [accuracy(model(x), expected).rel_err for model in models[1:]]
    if mode == "inference":

        def run(model):
            def fn():
                with torch.no_grad():
                    return model(x)

            return fn

        fns = [run(model) for model in models]
    else:
        fns = []
        for model in models:
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
            fns.append(lambda model=model, optimizer=optimizer: _step(model, x, optimizer))
    base, *timed = measure_interleaved(fns, config, clock)
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
        )
    return results
