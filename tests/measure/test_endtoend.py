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
from convbench.measure.endtoend import compare_models, compare_variants
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
