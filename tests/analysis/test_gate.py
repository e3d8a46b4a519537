"""The regression gate's three outcomes on synthetic samples: a flagged result never passes,
an interval wider than the threshold is inconclusive, and only a significant slowdown beyond
the threshold on clean evidence (or beyond any disturbance) is a regression."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from convbench.analysis.compare import compare_runs
from convbench.analysis.gate import EXIT_CODES, gate, overall


def results(run_id, spread, scale=1.0, flagged=False, seed=0, n=40, status="ok"):
    rng = random.Random(seed)
    samples = [scale * (1.0 + rng.uniform(-spread, spread)) for _ in range(n)]
    return {
        "run_id": run_id, "result_key": "k", "case": "c", "dtype": "float32", "device": "cpu",
        "direction": "forward", "layout": "contiguous", "backend": "b", "status": status,
        "median_ms": sorted(samples)[n // 2], "samples_ms": samples,
        "disturbed": int(flagged), "reason": "off pace: 30% slower" if flagged else None,
    }  # fmt: skip


def judged(old, new, threshold=0.05):
    cmp = compare_runs(pd.DataFrame([old]), pd.DataFrame([new]), threshold=threshold)
    gated = gate(cmp, threshold)
    return gated.iloc[0], overall(gated)


def test_a_tight_unchanged_result_passes():
    row, outcome = judged(results("a", 0.01), results("b", 0.01, seed=1))
    assert (row.gate, outcome) == ("pass", "pass") and "95% CI ends at" in row.gate_reason


@pytest.mark.parametrize("slowdown", [1.10, 1.20])
def test_a_clean_slowdown_beyond_the_threshold_is_a_regression(slowdown):
    row, outcome = judged(results("a", 0.01), results("b", 0.01, scale=slowdown, seed=1))
    assert (row.gate, outcome) == ("regression", "regression")
    assert "significantly slower beyond 5%" in row.gate_reason


@pytest.mark.parametrize("side", ["old", "new"])
def test_a_flagged_result_never_passes(side):
    old = results("a", 0.01, flagged=side == "old")
    new = results("b", 0.01, seed=1, flagged=side == "new")
    row, outcome = judged(old, new)
    assert (row.gate, outcome) == ("inconclusive", "inconclusive")
    assert "flagged (off pace: 30% slower)" in row.gate_reason


def test_a_flagged_slowdown_is_inconclusive_unless_beyond_any_disturbance():
    row, _ = judged(results("a", 0.01), results("b", 0.01, scale=1.3, seed=1, flagged=True))
    assert row.gate == "inconclusive" and "the host may have caused it" in row.gate_reason
    row, _ = judged(results("a", 0.01), results("b", 0.01, scale=2.5, seed=1, flagged=True))
    assert row.gate == "regression"


def test_an_interval_wider_than_the_threshold_is_inconclusive():
    row, outcome = judged(results("a", 0.5, n=8), results("b", 0.5, n=8, seed=1))
    assert (row.gate, outcome) == ("inconclusive", "inconclusive")
    assert "too noisy to rule out a 5% regression" in row.gate_reason


def test_a_result_missing_in_one_run_is_inconclusive():
    row, _ = judged(results("a", 0.01), results("b", 0.01, status="error"))
    assert row.gate == "inconclusive" and "ok → error" in row.gate_reason


def test_the_comparison_takes_the_worst_outcome_and_its_exit_code():
    frame = pd.DataFrame({"gate": ["pass", "inconclusive", "regression"]})
    assert overall(frame) == "regression"
    assert overall(frame.iloc[:2]) == "inconclusive"
    assert overall(frame.iloc[:1]) == "pass"
    assert overall(frame.iloc[:0]) == "inconclusive"
    assert EXIT_CODES == {"pass": 0, "regression": 1, "inconclusive": 3}
