"""Agreement between two measurements of the same tasks (calibrate --interference)."""

from __future__ import annotations

import math

import pytest

from convbench.analysis.agreement import agreement, relative


def test_agreement_counts_within_tolerance_and_unflagged_misses():
    truth = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 1.0, "only-truth": 1.0}
    other = {"a": 1.04, "b": 2.5, "c": 3.0, "d": 1.0, "only-other": 1.0}
    got = agreement(truth, other, flagged={"c"})
    assert got.n == 4
    assert got.within_pct == 50.0  # a and d
    assert got.worst_diff == pytest.approx(0.25)
    assert got.median_abs_diff == pytest.approx((0.04 + 0.25) / 2)
    assert got.flagged == 1 and got.unflagged_over == 1  # b is off 25% unflagged; c flagged
    assert math.isnan(agreement({}, {}).within_pct)


def test_relative_medians_cancel_a_machine_wide_slowdown():
    groups = {"a1": 1, "a2": 1, "b1": 2, "lonely": 3}
    quiet = {"a1": 1.0, "a2": 4.0, "b1": 1.0, "lonely": 1.0}
    slow = {k: 1.3 * v for k, v in quiet.items()}
    assert relative(quiet, groups) == pytest.approx({"a1": 0.5, "a2": 2.0})
    assert agreement(relative(quiet, groups), relative(slow, groups)).within_pct == 100.0
    assert agreement(quiet, slow).within_pct == 0.0
