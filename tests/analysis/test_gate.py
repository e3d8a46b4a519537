"""The regression gate's three outcomes on synthetic samples: a flagged result never passes,
an interval wider than the threshold is inconclusive, and only a significant slowdown beyond
the threshold on clean evidence (or beyond any disturbance) is a regression."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from convbench.analysis.compare import compare_runs
from convbench.analysis.gate import (
    EXIT_CODES,
    MIN_ROUNDS,
    _widened,
    anchor,
    gate,
    gate_result,
    overall,
    round_ratio,
)


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


def test_a_result_alone_whose_medians_moved_past_the_threshold_never_passes():
    """The ratio of the medians is not the interval's estimate (Hodges–Lehmann) and can lie
    outside it, as a skewed pair of runs gave: 1.054× against [1.037–1.050]."""
    row = {"verdict": "same", "ratio": 1.054, "ci_low": 1.037, "ci_high": 1.050}
    row.update(p_value=0.2, significant=False, flagged=False)
    assert gate_result(row, 0.05)[0] == "inconclusive"
    assert gate_result({**row, "ratio": 1.04}, 0.05)[0] == "pass"


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
    row, _ = judged(results("a", 0.01), results("b", 0.01, scale=3.5, seed=1, flagged=True))
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


# -- anchored: a result against the vendor backend timed in the same rounds ---------------
def timed(run_id, backend, scale, paces, flagged=False, seed=0, per_round=8, dispatch=None):
    """A result measured in interleaved rounds, the host running round k at ``paces[k]``;
    ``dispatch``: the library kernel a vendor backend records."""
    rng = random.Random(f"{run_id}{backend}{seed}")
    samples, rounds = [], []
    for k, pace in enumerate(paces):
        for _ in range(per_round):
            samples.append(scale * pace * (1.0 + rng.uniform(-0.01, 0.01)))
            rounds.append(k)
    row = results(run_id, 0.0, flagged=flagged)
    row.update(backend=backend, result_key=backend, samples_ms=samples, rounds=rounds)
    row.update(round_group="g", median_ms=sorted(samples)[len(samples) // 2], dispatch=dispatch)
    return row


def anchored_gate(old_rows, new_rows, threshold=0.05):
    old, new = pd.DataFrame(old_rows), pd.DataFrame(new_rows)
    cmp = anchor(compare_runs(old, new, threshold=threshold), old, new)
    gated = gate(cmp, threshold).set_index("backend")
    return gated, overall(gated)


STEADY = [1.0] * 10
DRIFTING = [1.0, 1.3, 1.1, 1.4, 1.2, 1.0, 1.35, 1.25, 1.05, 1.3]  # a shared VM's minutes


def test_round_ratio_cancels_a_pace_the_rounds_share():
    x, a = timed("a", "torch", 1.2, DRIFTING), timed("a", "onednn", 1.0, DRIFTING)
    ratio, low, high = round_ratio(x, a)
    assert ratio == pytest.approx(1.2, rel=0.01) and low < ratio < high
    assert high / low < 1.03
    assert all(math.isnan(v) for v in round_ratio(x, {**a, "run_id": "other"}))


def test_round_ratio_takes_the_round_as_its_unit():
    """A fast kernel's samples of one round move together: here each round of ``x`` is off
    its anchor by ±2% (alternating), 50 samples a round each within ±1%. One ratio per
    round gives an interval that holds that scatter; one per sample (1000 of them) would
    call the ratio known to a few tenths of a percent."""
    rounds = 20
    x = timed("a", "torch", 1.0, [1.02, 0.98] * (rounds // 2), per_round=50)
    a = timed("a", "onednn", 1.0, [1.0] * rounds, per_round=50)
    ratio, low, high = round_ratio(x, a)
    assert low <= 0.985 and high >= 1.015 and low < ratio < high
    # three rounds (a store from before 20 were the minimum): one ratio per sample
    few = [timed("a", b, 1.0, [1.02, 0.98, 1.02][:rounds], per_round=50) for b in ("x", "y")]
    _, low, high = round_ratio(*few)
    assert high / low < 1.01 and MIN_ROUNDS > 3


@pytest.mark.parametrize("slowdown", [1.10, 1.20])
def test_a_slowdown_under_a_drifting_flagged_host_is_still_caught_against_the_anchor(slowdown):
    old = [timed("a", "torch", 1.0, STEADY), timed("a", "onednn", 1.0, STEADY)]
    new = [timed("b", "torch", slowdown, DRIFTING, True), timed("b", "onednn", 1.0, DRIFTING, True)]
    gated, outcome = anchored_gate(old, new)
    assert gated.loc["torch", "gate"] == "regression" and outcome == "regression"
    assert "against onednn timed beside it" in gated.loc["torch", "gate_reason"]
    # the anchor itself, flagged and alone, is never judged a pass
    assert gated.loc["onednn", "gate"] == "inconclusive"


def test_a_host_that_slowed_between_runs_is_no_regression_against_the_anchor():
    old = [timed("a", "torch", 1.0, STEADY), timed("a", "onednn", 1.0, STEADY)]
    slow = [1.3] * 10  # every round 30% slower and nothing flagged: the guest did not see it
    new = [timed("b", "torch", 1.0, slow), timed("b", "onednn", 1.0, slow)]
    gated, outcome = anchored_gate(old, new)
    assert gated.loc["torch", "gate"] == "pass"
    # alone, the anchor is slower; but its case moved with it: the host, or a shared change
    assert gated.loc["onednn", "gate"] == "inconclusive" and outcome == "inconclusive"
    assert "the rest of its case moved with it" in gated.loc["onednn", "gate_reason"]
    assert math.isnan(gated.loc["onednn", "anchored_ratio"])


def test_an_anchor_slower_alone_while_its_case_held_still_is_a_regression():
    old = [timed("a", "torch", 1.0, STEADY), timed("a", "onednn", 1.0, STEADY)]
    new = [timed("b", "torch", 1.0, STEADY), timed("b", "onednn", 1.2, STEADY)]
    gated, outcome = anchored_gate(old, new)
    assert gated.loc["onednn", "gate"] == "regression" and outcome == "regression"
    assert gated.loc["torch", "gate"] != "regression"  # faster against a slower anchor


def test_an_anchored_ratio_too_noisy_for_the_threshold_is_inconclusive():
    old = [timed("a", "torch", 1.0, STEADY, per_round=1), timed("a", "onednn", 1.0, STEADY)]
    new = [timed("b", "torch", 1.03, STEADY, per_round=1), timed("b", "onednn", 1.0, STEADY)]
    for row in (old[0], new[0]):  # a scatter of ±8% per sample, ten samples
        scatter = [0.92, 1.08] * 5
        row["samples_ms"] = [v * f for v, f in zip(row["samples_ms"], scatter, strict=True)]
    gated, _ = anchored_gate(old, new)
    assert gated.loc["torch", "gate"] == "inconclusive"
    assert "too noisy to rule out" in gated.loc["torch", "gate_reason"]


def test_anchored_intervals_widen_by_the_spread_between_runs():
    """Results whose anchored ratios scatter by ±3% from run to run, each with a narrow
    interval from its own samples: the intervals widen by that scatter (a robust one: the
    one result that changed does not set it), so an unchanged result is not called a
    regression, and a real 15% slowdown still is."""
    ratios = [0.97, 1.03, 0.98, 1.02, 1.00, 1.06, 1.15]
    cmp = pd.DataFrame(
        {
            "anchored_ratio": ratios,
            "anchored_low": [r * 0.99 for r in ratios],
            "anchored_high": [r * 1.01 for r in ratios],
        }
    )
    wide = _widened(cmp)
    spread = wide["anchored_spread"].iloc[0]
    assert 0.02 < spread < 0.08
    assert (wide["anchored_high"] > cmp["anchored_high"]).all()
    row = {"verdict": "same", "anchor": "onednn", "ratio": 1.0, "ci_low": 0.9, "ci_high": 1.1}
    judged = [gate_result({**row, **r}, 0.05)[0] for r in wide.to_dict("records")]
    assert judged[5] != "regression" and judged[6] == "regression"
    few = _widened(cmp.iloc[:4])  # too few results to tell a spread: nothing added
    assert (few["anchored_spread"] == 0).all() and np.allclose(
        few["anchored_high"], cmp["anchored_high"][:4]
    )


def test_a_backend_unsupported_in_both_runs_is_left_out_of_the_gate():
    old = {**results("a", 0.01, status="unsupported"), "result_key": "u", "backend": "cudnn"}
    new = {**results("b", 0.01, status="unsupported"), "result_key": "u", "backend": "cudnn"}
    cmp = compare_runs(
        pd.DataFrame([results("a", 0.01), old]), pd.DataFrame([results("b", 0.01, seed=1), new])
    )
    gated = gate(cmp, 0.05)
    assert list(gated["backend"]) == ["b"] and overall(gated) == "pass"


def test_one_anchor_s_jitter_between_runs_moves_one_ratio_not_their_median():
    """im2col unchanged; its baseline (onednn_packed) ran 6% faster in the second run (a
    placement that happened to suit it), the other library backends as before. Against the
    baseline alone im2col looks 6% slower; against the median of the three library backends
    it is not."""

    def run(run_id, packed):
        return [
            timed(run_id, "im2col", 2.0, STEADY),
            timed(run_id, "onednn", 1.0, STEADY, dispatch="Mkldnn"),
            timed(run_id, "onednn_packed", packed, STEADY, dispatch="Mkldnn"),
            timed(run_id, "torch", 1.1, STEADY, dispatch="Mkldnn"),
        ]

    gated, _ = anchored_gate(run("a", 0.9), run("b", 0.9 * 0.94))
    im2col = gated.loc["im2col"]
    assert im2col["anchor"] == "onednn, onednn_packed, torch"
    assert im2col["anchored_ratio"] == pytest.approx(1.0, abs=0.01)
    assert im2col["gate"] == "pass", im2col["gate_reason"]
    assert "the median of onednn, onednn_packed, torch" in im2col["gate_reason"]
    # the baseline is judged alone, against its case for whether the case moved with it
    assert gated.loc["onednn_packed", "case_ratio"] == pytest.approx(0.94, abs=0.01)
    assert math.isnan(gated.loc["onednn_packed", "anchored_ratio"])
    # a from-scratch backend is no anchor: a library backend's own anchors are the others
    assert gated.loc["torch", "anchor"] == "onednn, onednn_packed"


def widened_and_judged(backends, ratios, half):
    """Anchored results of ``backends`` at ``ratios``, each with an interval of log
    half-width ``half``, widened (`_widened`): the spread added, and each one's outcome."""
    ratios = np.asarray(ratios)
    cmp = pd.DataFrame({
        "backend": backends, "anchored_ratio": ratios,
        "anchored_low": ratios * np.exp(-half), "anchored_high": ratios * np.exp(half),
    })  # fmt: skip
    wide = _widened(cmp)
    row = {"verdict": "same", "anchor": "onednn", "ratio": 1.0, "ci_low": 0.9, "ci_high": 1.1}
    judged = [gate_result({**row, **r}, 0.05)[0] for r in wide.to_dict("records")]
    return wide["anchored_spread"].iloc[0], judged


def test_a_backend_slowed_in_every_case_does_not_widen_the_others_intervals():
    """Half the anchored results are one backend slowed 10% in each of its cases: the spread
    between runs is each backend's scatter about its own median (1%), not the gap between
    the two backends, so the slowed one is a regression and the other a pass."""
    rng = np.random.default_rng(0)
    ratios = np.concatenate([1.10 * (1 + rng.uniform(-0.01, 0.01, 6)),
                             1.00 * (1 + rng.uniform(-0.01, 0.01, 6))])  # fmt: skip
    spread, judged = widened_and_judged(["fft"] * 6 + ["winograd"] * 6, ratios, 0.005)
    assert spread < 0.02
    assert judged == ["regression"] * 6 + ["pass"] * 6


def test_the_spread_between_runs_leaves_out_what_each_interval_already_holds():
    """Anchored ratios that scatter about as much as their own intervals say: the scatter is
    the within-run noise those intervals already carry, so nothing is added; with narrow
    intervals the same scatter is between runs, and is added."""
    logs = np.array([-0.03, -0.02, -0.013, -0.007, -0.003, 0.0, 0.001, 0.003, 0.007, 0.013])
    ratios = np.exp(logs)

    def widened(half):
        return widened_and_judged(["fft"] * len(ratios), ratios, half)[0]

    assert widened(1.96 * 0.03) == 0.0  # within-run sd 3%, above the scatter
    assert 0.005 < widened(0.001) < 0.02  # within-run sd 0.05%: the scatter is between runs


def test_two_cases_per_backend_are_enough_to_keep_a_slowed_backend_out_of_the_spread():
    """A suite of two cases: torch slowed 20% in both, two other backends moved a little
    each. The spread comes from each backend's two results about their own median, so the
    slowdown does not widen the intervals into `inconclusive` (seen in `calibrate --gate`'s
    test when they were centred on the comparison's median)."""
    backends = ["torch"] * 2 + ["fft"] * 2 + ["winograd"] * 2
    spread, judged = widened_and_judged(backends, [1.20, 1.21, 0.97, 0.98, 1.04, 1.05], 0.01)
    assert spread < 0.02
    assert judged[:2] == ["regression", "regression"]
