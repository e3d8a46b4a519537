"""A whole model before and after `convbench.optimize`: timed end to end, in interleaved rounds.

`compare_models` times the original and the optimized model on the same input with the
ordinary timing engine (`measure_interleaved`: warmup, block sizing, adaptive stopping), the
two alternating in every round so that drift falls on both alike, and reports the speedup
(original / optimized) with its Hodges–Lehmann/Moses interval and the Mann–Whitney p — the
statistics `convbench compare` uses — and the largest output difference between the two.

``inference`` is ``model(x)`` in eval mode under `torch.no_grad()`. ``train`` is one
training step: forward, ``loss.backward()`` (loss: the mean square of the output) and an
SGD step, each model with its own optimizer, so that both take the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def to_dict(self) -> dict:
        return dict(self.__dict__)


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
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    config = config or TimingConfig(warmup_s=0.5, min_samples=10, max_time_s=10.0)
    clock = clock_for(x.device)
    for model in (original, optimized):
        model.eval()
    with torch.no_grad():
        diff = accuracy(optimized(x), original(x)).rel_err
    if mode == "inference":

        def run(model):
            def fn():
                with torch.no_grad():
                    return model(x)

            return fn

        fns = [run(original), run(optimized)]
    else:
        fns = []
        for model in (original, optimized):
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
            fns.append(lambda model=model, optimizer=optimizer: _step(model, x, optimizer))
    a, b = measure_interleaved(fns, config, clock)
    ratio = stats.ratio_ci(a.samples_ms, b.samples_ms, config.confidence)
    return EndToEnd(
        mode=mode,
        original_ms=a.median_ms,
        optimized_ms=b.median_ms,
        speedup=ratio.ratio,
        ci_low=ratio.ci_low,
        ci_high=ratio.ci_high,
        p_value=stats.mannwhitney_p(a.samples_ms, b.samples_ms),
        max_rel_diff=diff,
        n_samples=min(a.n_samples, b.n_samples),
    )
