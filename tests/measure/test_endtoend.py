"""Whole models timed end to end: the original against one or several optimized variants in
the same interleaved rounds (what `convbench tune` ends with), flagged as per-layer rows are."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from convbench.measure.clocks import FakeClock
from convbench.measure.config import TimingConfig
from convbench.measure.disturbance import FakeProbe
from convbench.measure.endtoend import (
    DEFAULT_TIMING,
    compare_models,
    compare_variants,
    ratio_drift,
    timing_for,
)
from convbench.measure.engine import Measurement
from convbench.measure.pace import FakePace

FAST = TimingConfig(warmup_s=0.01, min_samples=5, max_samples=8, max_time_s=0.2)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_every_variant_is_compared_with_the_original_from_the_same_rounds():
    original = model()
    wrong = copy.deepcopy(original)
    with torch.no_grad():
        wrong[2].bias.add_(1.0)  # a variant whose output differs: its difference is reported
    layout = copy.deepcopy(original).to(memory_format=torch.channels_last)
    results = compare_variants(original, {"same": layout, "wrong": wrong}, X, "inference", FAST)
    assert list(results) == ["same", "wrong"]
    same, off = results["same"], results["wrong"]
    assert same.original_ms == off.original_ms  # one set of original samples for both
    assert same.max_rel_diff < 1e-6 < 0.1 < off.max_rel_diff
    for r in (same, off):
        assert r.mode == "inference" and r.n_samples >= FAST.min_samples
        assert len(r.samples_ms) >= r.n_samples and r.ci_low <= r.speedup <= r.ci_high
        assert "samples_ms" not in r.to_dict() and r.to_dict()["variant"] == r.variant
    single = compare_models(original, layout, X, "inference", FAST)
    assert single.variant == "tuned" and single.max_rel_diff < 1e-6


def test_a_training_step_steps_every_model_with_its_own_optimizer():
    original = model()
    variant = copy.deepcopy(original)
    before = original[0].weight.detach().clone()
    result = compare_variants(original, {"tuned": variant}, X, "train", FAST)["tuned"]
    assert result.mode == "train" and result.max_rel_diff == 0
    for m in (original, variant):  # SGD steps were taken on both, none shared
        assert not torch.equal(m[0].weight, before) and m[0].weight.grad is not None
    assert original[0].weight.data_ptr() != variant[0].weight.data_ptr()


def test_bad_calls_say_what_is_wrong():
    with pytest.raises(ValueError, match="mode: expected one of inference, train"):
        compare_variants(model(), {"a": model()}, X, "eval", FAST)
    with pytest.raises(ValueError, match="variants: nothing to compare"):
        compare_variants(model(), {}, X, "inference", FAST)


MS = 1_000_000


def scripted(probe, pace, config=FAST) -> dict:
    """One variant against the original on a scripted clock, probe and host pace."""
    original = model()
    return compare_variants(
        original, {"same": copy.deepcopy(original)}, X, "inference", config,
        clock=FakeClock(MS), probe=probe, pace=pace,
    )["same"]  # fmt: skip


def test_clean_rounds_carry_no_flag():
    result = scripted(FakeProbe([0.0]), FakePace(1000))
    assert result.flags == () and not result.flagged and result.to_dict()["flags"] == []
    assert result.speedup == 1.0 and result.n_samples >= FAST.min_samples


def test_disturbed_rounds_are_flagged_as_per_layer_rows_are():
    result = scripted(FakeProbe([0.5]), FakePace(1000))  # every sample disturbed
    assert result.flagged and [f.split(":")[0] for f in result.flags] == ["original", "same"]
    assert all(": disturbed: " in f and "scripted as disturbed" in f for f in result.flags)
    assert result.to_dict()["flags"] == list(result.flags)


def test_off_pace_rounds_are_flagged_against_max_pace():
    result = scripted(FakeProbe([0.0]), FakePace(1300))  # the host 30% slow
    assert len(result.flags) == 2 and all("off pace: the host ran" in f for f in result.flags)
    loose = replace(FAST, max_pace=0.5)
    assert scripted(FakeProbe([0.0]), FakePace(1300), loose).flags == ()


def test_too_few_undisturbed_samples_for_a_decision_are_flagged():
    # three of four samples disturbed, sampling given up at 2 × max_samples: 4–5 clean, over
    # min_samples 2 (not "disturbed"), under the floor of 6 a decision needs
    config = replace(FAST, min_samples=2, floor_samples=6)
    result = scripted(FakeProbe([0.0, 0.5, 0.5, 0.5]), FakePace(1000), config)
    assert any("too few samples" in f and "the 6 a decision needs" in f for f in result.flags)


class _ShiftingClock(FakeClock):
    """1 ms a call, until the virtual time passes ``at_ns``; then each model in ``slowed``
    costs ``factor`` times as much (the model last called is known from its forward hook)."""

    def __init__(self, at_ns: int, slowed: set[str], factor: float):
        super().__init__(MS)
        self.at_ns, self.slowed, self.factor, self.last = at_ns, slowed, factor, ""

    def _next_cost_ns(self) -> int:
        late = self._t_ns > self.at_ns and self.last in self.slowed
        return round(MS * (self.factor if late else 1.0))


def shifted(slowed: set[str]):
    """The original against a copy, 20 samples each, one a round; halfway, ``slowed`` get
    1.5× slower."""
    original, same = model(), model()
    clock = _ShiftingClock(40 * MS, slowed, 1.5)  # 20 warm-up calls, then 2 a round
    for name, m in (("original", original), ("same", same)):
        m.register_forward_hook(lambda *_, name=name: setattr(clock, "last", name))
    config = replace(FAST, min_samples=20, max_samples=20, max_time_s=10.0, round_s=1e-4)
    return compare_variants(
        original, {"same": same}, X, "inference", config, clock=clock,
        probe=FakeProbe([0.0]), pace=FakePace(1000),
    )["same"]  # fmt: skip


def test_a_host_slowing_both_models_alike_moves_no_speedup_and_flags_nothing():
    result = shifted({"original", "same"})  # each model's median moved 50%; their ratio not
    assert result.flags == () and result.speedup == pytest.approx(1.0)
    assert result.original_ms > 1.0 and result.n_samples == 20


def test_a_change_that_slows_one_model_flags_the_comparison_unsteady():
    result = shifted({"same"})
    assert result.flags == (
        "same: unsteady: its speedup moved 50% between stretches of the rounds",
    )


def test_ratio_drift_pairs_the_samples_by_round():
    def m(samples, rounds):
        return Measurement(tuple(samples), 1, 0, 0.0, 0.0, "ci", "latency", "fake", 0, 0.0,
                           rounds=tuple(rounds))  # fmt: skip

    base = m([1.0] * 10 + [2.0] * 10, range(20))
    assert ratio_drift(base, m([1.0] * 10 + [2.0] * 10, range(20))) == 0.0
    # the same times, recorded in another order: paired by round, not by position
    assert ratio_drift(base, m([2.0] * 10 + [1.0] * 10, reversed(range(20)))) == 0.0
    # several samples a round: their median stands for the round
    assert ratio_drift(base, m([1.0, 1.0, 9.0] * 10 + [2.0] * 30, [r // 3 for r in range(60)])) == 0
    assert ratio_drift(base, m([2.0] * 20, range(20))) == pytest.approx(1.0)  # 0.5 → 1
    assert ratio_drift(base, m([1.0] * 3, ())) == 0.0  # samples without rounds


def test_a_short_end_to_end_budget_gets_a_short_warm_up():
    """--e2e-time S: S of samples per model and mode, after a tenth of it warming up, and
    never more than the default half second (a long budget is unchanged but for S)."""
    short, long = timing_for(1.0), timing_for(30.0)
    assert (short.max_time_s, short.warmup_s) == (1.0, pytest.approx(0.1))
    assert (long.max_time_s, long.warmup_s) == (30.0, DEFAULT_TIMING.warmup_s)
    assert replace(long, max_time_s=DEFAULT_TIMING.max_time_s) == DEFAULT_TIMING
