"""Whole models timed end to end: the original against one or several optimized variants in
the same interleaved rounds (what `convbench tune` ends with)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from convbench.measure.config import TimingConfig
from convbench.measure.endtoend import compare_models, compare_variants

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
