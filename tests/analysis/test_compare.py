"""convbench.analysis on synthetic DataFrames: winners, significance, run comparison."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from convbench import analysis
from convbench.report.format import format_ratio

TOL = {"float32": 1e-4, "float16": 1e-2}


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_vendor_backend_per_device():
    assert analysis.vendor_backend("cpu") == "onednn"
    assert analysis.vendor_backend("cuda") == analysis.vendor_backend("cuda:1") == "cudnn"
    assert analysis.vendor_backend("mps") is None


def test_default_tolerances_come_from_the_accuracy_probe():
    tol = analysis.default_tolerances()
    assert tol["float32"] == 1e-4 and tol["float16"] == 1e-2 and "bfloat16" in tol


def test_winner_map_skips_backends_outside_tolerance(row):
    df = frame(
        row(backend="fft", median=0.5, rel_err=3e-3),  # fastest, but a wrong answer
        row(backend="winograd", median=0.8, rel_err=5e-5),
        row(backend="naive", median=3.0),
        row(backend="onednn", median=2.0),
    )
    w = analysis.winner_map(df, TOL).iloc[0]
    assert w["winner"] == "winograd"
    assert w["rejected"] == "fft"
    assert w["candidates"] == 3
    assert w["baseline"] == "onednn"
    assert w["speedup"] == pytest.approx(w["baseline_ms"] / w["winner_ms"])
    assert w["speedup"] == pytest.approx(2.5, rel=0.05)
    assert w["significant"]
    # the same answer is allowed under a looser dtype tolerance
    df16 = df.assign(dtype="float16")
    assert analysis.winner_map(df16, TOL).iloc[0]["winner"] == "fft"


def test_winner_map_per_key_and_vendor_on_cuda(row):
    df = frame(
        row(case="a", backend="im2col", median=1.0, device="cuda:0"),
        row(case="a", backend="cudnn", median=0.5, device="cuda:0"),
        row(case="b", backend="im2col", median=1.0, direction="backward"),
        row(case="b", backend="onednn", status="unsupported", direction="backward"),
    )
    w = analysis.winner_map(df, TOL).set_index("case")
    assert w.loc["a", "winner"] == "cudnn" and w.loc["a", "speedup"] == 1.0
    assert w.loc["a", "baseline"] == "cudnn"
    assert w.loc["b", "winner"] == "im2col" and math.isnan(w.loc["b", "speedup"])


def test_winner_map_none_within_tolerance(row):
    df = frame(row(backend="fft", rel_err=1.0), row(backend="onednn", rel_err=math.nan))
    w = analysis.winner_map(df, TOL).iloc[0]
    assert w["winner"] is None and w["candidates"] == 0
    assert w["rejected"] == "fft, onednn"


def test_difference_uses_mann_whitney_on_samples(row):
    fast, slow = row(median=1.0, seed=1), row(median=1.3, seed=2)
    d = analysis.difference(slow, fast)
    assert d.method == "mannwhitney" and d.significant and d.p_value < 1e-6
    assert d.ratio == pytest.approx(1.3, rel=0.03)
    assert d.ci_low < d.ratio < d.ci_high and d.ci_low > 1
    noisy_a = row(median=1.0, spread=0.3, n=8, seed=3)
    noisy_b = row(median=1.02, spread=0.3, n=8, seed=4)
    assert not analysis.difference(noisy_a, noisy_b).significant


def test_a_difference_inside_the_timing_resolution_is_not_significant(row):
    # Two backends that run one kernel, 1% apart on a thousand samples each: the rank test
    # alone calls it (p far below 0.05), but one kernel measures that far from itself.
    one = row(backend="onednn", median=1.0, n=1000, spread=0.005, seed=5)
    same_kernel = row(backend="torch", median=0.99, n=1000, spread=0.005, seed=6)
    d = analysis.difference(same_kernel, one)
    assert d.p_value < 1e-6 and d.ci_high < 1.0
    assert d.ci_high > 1 / (1 + analysis.RESOLUTION) and not d.significant
    faster = row(backend="winograd", median=0.95, n=1000, spread=0.005, seed=7)
    assert analysis.difference(faster, one).significant  # 5%: beyond the resolution
    assert not analysis.beyond_resolution(math.nan, math.nan)


def test_difference_falls_back_to_confidence_intervals(row):
    a = row(median=1.0, with_samples=False) | {"ci_low_ms": 0.98, "ci_high_ms": 1.02}
    b = row(median=1.5, with_samples=False) | {"ci_low_ms": 1.45, "ci_high_ms": 1.55}
    d = analysis.difference(b, a)
    assert d.method == "ci_overlap" and d.significant
    assert d.ci_low == pytest.approx(1.45 / 1.02) and d.ci_high == pytest.approx(1.55 / 0.98)
    c = row(median=1.01, with_samples=False) | {"ci_low_ms": 0.97, "ci_high_ms": 1.05}
    assert not analysis.difference(c, a).significant
    bare = row(median=1.5, with_samples=False) | {"ci_low_ms": math.nan}
    d = analysis.difference(bare, a)
    assert d.method == "none" and not d.significant and d.ratio == pytest.approx(1.5, rel=0.05)


def test_speedups_and_geomeans_carry_significance_marks(row):
    rows = []
    for i, case in enumerate(["c1", "c2", "c3"]):
        base = row(case=case, backend="onednn", median=2.0, seed=10 + i)
        rows.append(base)
        rows.append(row(case=case, backend="winograd", median=1.0, seed=20 + i))
        # indistinguishable from the baseline: its samples, each moved up or down by 1 %
        jittered = [x * (1.01 if k % 2 else 0.99) for k, x in enumerate(base["samples_ms"])]
        rows.append(base | {"backend": "naive", "samples_ms": jittered})
    sp = analysis.speedups(frame(*rows), tolerances=TOL)
    assert set(sp["backend"]) == {"winograd", "naive"}  # the baseline is not its own row
    wino = sp[sp["backend"] == "winograd"]
    assert wino["significant"].all()
    assert wino["speedup"].to_numpy() == pytest.approx([2.0] * 3, rel=0.05)
    geo = analysis.geomean_speedups(sp).set_index("backend")
    assert geo.loc["winograd", "geomean_speedup"] == pytest.approx(2.0, rel=0.05)
    assert geo.loc["winograd", "significant"] and geo.loc["winograd", "n_cases"] == 3
    assert not geo.loc["naive", "significant"]
    assert format_ratio(geo.loc["winograd", "geomean_speedup"], True).endswith("×")
    naive_text = format_ratio(geo.loc["naive", "geomean_speedup"], False)
    assert naive_text.endswith(" ~")


def test_speedups_explicit_baseline_and_backend_filter(row):
    df = frame(
        row(backend="naive", median=4.0),
        row(backend="im2col", median=2.0),
        row(backend="winograd", median=1.0),
        row(backend="onednn", median=1.5),
    )
    sp = analysis.speedups(df, baseline="naive", backends=["winograd"], tolerances=TOL)
    assert list(sp["backend"]) == ["winograd"] and sp["baseline"].iloc[0] == "naive"
    assert sp["speedup"].iloc[0] == pytest.approx(4.0, rel=0.05)


def test_combined_ratio_interval():
    geo, low, high = analysis.combined_ratio([2.0, 2.0], [1.9, 1.9], [2.1, 2.1])
    assert geo == pytest.approx(2.0) and 1.9 < low < 2.0 < high < 2.1
    geo, low, high = analysis.combined_ratio([2.0, 0.5], [1.5, 0.4], [2.5, 0.6])
    assert geo == pytest.approx(1.0) and low < 1 < high
    assert math.isnan(analysis.combined_ratio([2.0], [math.nan], [3.0])[1])


@pytest.mark.parametrize(
    ("ratio", "low", "high", "significant", "verdict"),
    [
        (1.5, 1.4, 1.6, True, "slower"),
        (0.5, 0.45, 0.55, True, "faster"),
        (1.01, 0.99, 1.03, False, "same"),
        (1.03, 1.02, 1.04, True, "same"),  # real, but below the threshold
        (1.04, 1.01, 1.08, True, "ambiguous"),  # real, reaching past the threshold
        (1.2, 0.8, 1.7, False, "ambiguous"),  # too noisy to tell
        (1.2, math.nan, math.nan, False, "ambiguous"),
        (math.nan, math.nan, math.nan, False, "ambiguous"),
    ],
)
def test_classify(ratio, low, high, significant, verdict):
    assert analysis.classify(ratio, low, high, significant, 0.05) == verdict


def _run(row, run_id: str, slow: dict | None = None) -> pd.DataFrame:
    slow = slow or {}
    rows = []
    for case in ("c1", "c2"):
        for backend in ("naive", "im2col", "onednn"):
            factor = slow.get((case, backend), 1.0)
            rows.append(row(case=case, backend=backend, median=factor, run_id=run_id))
    rows.append(row(case="c1", backend="cudnn", status="unsupported", run_id=run_id))
    return frame(*rows)


def test_same_run_comparison_shows_no_significant_regression(row):
    run = _run(row, "r1")
    cmp = analysis.compare_runs(run, run, threshold=0.05)
    assert analysis.regressions(cmp).empty
    matched = cmp[cmp["verdict"] != "missing"]
    assert set(matched["verdict"]) == {"same"}
    assert (matched["ratio"] == 1.0).all() and not matched["significant"].any()
    summary = analysis.comparison_summary(cmp)
    assert summary["counts"]["slower"] == 0 and summary["counts"]["missing"] == 1
    assert summary["geomean_ratio"] == pytest.approx(1.0) and summary["verdict"] == "same"


def test_a_deliberately_slowed_result_is_caught(row):
    old = _run(row, "r1")
    new = _run(row, "r2", slow={("c2", "im2col"): 1.3})
    new["result_key"] = old["result_key"]  # the same tasks, measured again
    cmp = analysis.compare_runs(old, new, threshold=0.05)
    slower = analysis.regressions(cmp)
    assert list(zip(slower["case"], slower["backend"], strict=True)) == [("c2", "im2col")]
    assert slower["ratio"].iloc[0] == pytest.approx(1.3, rel=0.05)
    # the other results were re-measured with fresh noise: nothing else is called slower
    others = cmp[(cmp["verdict"] != "missing") & ~cmp.index.isin(slower.index)]
    assert not (others["verdict"] == "slower").any()
    # a threshold above the slow-down lets it pass
    lenient = analysis.compare_runs(old, new, threshold=0.5)
    assert analysis.regressions(lenient).empty


def test_status_changes_are_missing_not_timed(row):
    old = _run(row, "r1")
    new = old.copy()
    new.loc[new["backend"] == "naive", "status"] = "error"
    cmp = analysis.compare_runs(old, new).set_index(["case", "backend"])
    assert cmp.loc[("c1", "naive"), "verdict"] == "missing"
    assert cmp.loc[("c1", "naive"), "status_new"] == "error"


def test_compulsory_bytes_and_roofline_points(row, synthetic_problem):
    PROBLEM, FLOPS = synthetic_problem
    pj = json.dumps(PROBLEM)
    n_in, n_w, n_out = 2 * 4 * 64, 8 * 4 * 9, 2 * 8 * 64
    assert analysis.compulsory_bytes(pj, "forward", "float32", FLOPS) == 4 * (n_in + n_w + n_out)
    backward = analysis.compulsory_bytes(pj, "backward", "float16", 2 * FLOPS)
    assert backward == 2 * (2 * (n_in + n_w) + n_out)
    df = frame(row(backend="naive", median=1.0), row(backend="onednn", median=0.5))
    pts = analysis.roofline_points(df, {"r1": {"cpu/float32": 100.0}})
    assert pts["peak_gflops"].tolist() == [100.0, 100.0]
    assert pts["pct_of_peak"].to_numpy() == pytest.approx(pts["gflops"].to_numpy())
    assert pts["intensity_flop_per_byte"].iloc[0] == pytest.approx(
        FLOPS / (4 * (n_in + n_w + n_out))
    )
    no_peak = analysis.roofline_points(df, {})
    assert no_peak["pct_of_peak"].isna().all()


def test_compare_adds_whole_model_table_with_layer_counts(row):
    from convbench.cli.compare import _model_tables

    rows = []
    for case in ("a", "b"):
        for backend, median in (("im2col", 1.0), ("onednn", 2.0)):
            rows.append(row(case=case, backend=backend, median=median))
    df = pd.DataFrame(rows)
    assert _model_tables(df, None) == (None, [])
    df["count"] = df["case"].map({"a": 3, "b": 1})
    totals, tables = _model_tables(df, None)
    by = totals.set_index("backend")
    assert by.loc["im2col", "total_ms"] == pytest.approx(4.0, rel=0.02)
    assert by.loc["onednn", "total_ms"] == pytest.approx(8.0, rel=0.02)
    assert by.loc["onednn", "mix_speedup"] == pytest.approx(2.0, rel=0.02)
    title, columns, printed = tables[0]
    assert "whole model" in title and len(printed) == 2


def test_torch_is_the_baseline_where_the_vendor_has_no_result(row, synthetic_problem):
    import pandas as pd

    cases = [("c1", "torch", 2.0), ("c1", "winograd", 1.0), ("c2", "onednn", 2.0)]
    cases += [("c2", "torch", 2.1), ("c2", "winograd", 1.0)]
    df = pd.DataFrame([row(case=c, backend=b, median=m) for c, b, m in cases])
    w = analysis.winner_map(df).set_index("case")
    assert (w.loc["c1", "baseline"], w.loc["c2", "baseline"]) == ("torch", "onednn")
    sp = analysis.speedups(df)
    assert set(sp[sp.case == "c1"].baseline) == {"torch"}
    assert "torch" in set(sp[sp.case == "c2"].backend)  # torch compared with onednn there


def test_difference_uses_the_rounds_of_results_measured_together(rounds_data):
    import numpy as np

    from convbench.analysis.compare import difference

    a, b, ra, rb = rounds_data(shift_b=1.0)
    row_a = {"median_ms": float(np.median(a)), "samples_ms": a, "rounds": ra, "round_group": "g"}
    row_b = {"median_ms": float(np.median(b)), "samples_ms": b, "rounds": rb, "round_group": "g"}
    d = difference(row_a, row_b)
    assert d.method == "rounds" and not d.significant
    apart = difference({**row_a, "round_group": None}, row_b)  # two runs: no pairing
    assert apart.method == "mannwhitney" and apart.significant


@pytest.mark.parametrize(
    ("factor", "verdict"),
    [(1.3, "disturbed"), (0.6, "disturbed"), (4.0, "slower"), (0.25, "faster")],
)
def test_a_flagged_result_is_judged_only_beyond_what_disturbance_explains(row, factor, verdict):
    old = _run(row, "r1")
    new = _run(row, "r2", slow={("c2", "im2col"): factor})
    new["result_key"] = old["result_key"]
    flagged = (new["case"] == "c2") & (new["backend"] == "im2col")
    new["disturbed"] = flagged.astype(int)
    cmp = analysis.compare_runs(old, new, threshold=0.05).set_index(["case", "backend"])
    assert cmp.loc[("c2", "im2col"), "verdict"] == verdict
    assert cmp.loc[("c2", "im2col"), "ratio"] == pytest.approx(factor, rel=0.05)
    assert (verdict == "slower") == (not analysis.regressions(cmp.reset_index()).empty)


def test_a_winner_on_the_baselines_own_kernel_is_not_crowned(row):
    """torch and onednn both dispatch to Mkldnn on a CPU: one kernel measured twice."""
    import pandas as pd

    from convbench.analysis.winners import same_kernel, winner_map

    rows = [row(case="c", backend=b, median=m) for b, m in (("torch", 0.9), ("onednn", 1.0))]
    df = pd.DataFrame(rows).assign(dispatch="Mkldnn")
    w = winner_map(df).iloc[0]
    assert (w["winner"], w["same_kernel"]) == ("torch", "Mkldnn")
    df.loc[df.backend == "torch", "dispatch"] = "Slow2d"
    assert winner_map(df).iloc[0]["same_kernel"] is None
    assert same_kernel({"backend": "onednn", "dispatch": "Mkldnn"}, None) is None


def test_tf32_against_float32_on_cudnn_is_a_win_not_one_kernel(row):
    """On a GPU, torch with PyTorch's default (TF32 for float32) runs other cuDNN kernels than
    cudnn (float32 arithmetic): its speed is TF32's, and it is crowned; beside cudnn_tf32 it
    is one kernel measured twice (`convbench.backends.dispatch.kernel_family`)."""
    import pandas as pd

    from convbench.analysis.winners import winner_map

    timed = (("torch", 0.5, "Cudnn (TF32)"), ("cudnn", 1.0, "Cudnn"))
    rows = [row(case="c", backend=b, median=m, device="cuda") | {"dispatch": d}
            for b, m, d in timed]  # fmt: skip
    w = winner_map(pd.DataFrame(rows), {"float32": 1e-2}).iloc[0]
    assert (w["winner"], w["baseline"], w["same_kernel"]) == ("torch", "cudnn", None)
    assert w["speedup"] == pytest.approx(2.0, rel=0.05)
    tf32 = row(case="c", backend="cudnn_tf32", median=0.48, device="cuda")
    rows = [rows[0], tf32 | {"dispatch": "Cudnn (TF32)"}]  # no cudnn row: torch is the baseline
    w = winner_map(pd.DataFrame(rows), {"float32": 1e-2}).iloc[0]
    assert (w["winner"], w["baseline"]) == ("cudnn_tf32", "torch")
    assert w["same_kernel"] == "Cudnn (TF32)"
