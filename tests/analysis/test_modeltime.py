"""Model-level totals: Σ count × median per backend, and the best per-layer mix."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from rich.console import Console
from rich.table import Table

from convbench.analysis.modeltime import best_mix, has_layer_counts, model_totals, render

COUNTS = {"stem": 1, "block": 4, "head": 2}
# backend -> case -> (status, median_ms, rel_err)
RESULTS = {
    "im2col": {"stem": ("ok", 2.0, 1e-7), "block": ("ok", 1.0, 1e-7), "head": ("ok", 3.0, 1e-7)},
    "winograd": {
        "stem": ("unsupported", None, None),
        "block": ("ok", 0.5, 2e-6),
        "head": ("ok", 4.0, 2e-6),
    },
    "fft": {"stem": ("ok", 1.5, 1e-7), "block": ("ok", 0.25, 1e-3), "head": ("ok", 2.5, 1e-7)},
}


def frame(results=RESULTS, counts=COUNTS, **extra) -> pd.DataFrame:
    rows = [
        dict(
            case=case,
            count=counts[case.partition("@")[0]],
            backend=backend,
            device="cpu",
            dtype="float32",
            direction="forward",
            status=status,
            median_ms=median,
            rel_err=rel,
            **extra,
        )
        for backend, by_case in results.items()
        for case, (status, median, rel) in by_case.items()
    ]
    return pd.DataFrame(rows)


def by_backend(totals: pd.DataFrame) -> dict:
    return {row.backend: row for row in totals.itertuples()}


def test_totals_missing_cases_and_the_mix():
    totals = model_totals(frame())
    rows = by_backend(totals)
    assert rows["im2col"].total_ms == pytest.approx(1 * 2.0 + 4 * 1.0 + 2 * 3.0)
    assert rows["fft"].total_ms == pytest.approx(1.5 + 4 * 0.25 + 2 * 2.5)
    assert math.isnan(rows["winograd"].total_ms)
    assert (rows["winograd"].n_missing, rows["winograd"].missing) == (1, "stem")
    assert rows["im2col"].n_layers == 7 and rows["im2col"].n_cases == 3
    # fft's block result is outside float32's tolerance (1e-4): the mix takes winograd there
    assert rows["fft"].n_out_of_tol == 1
    mix_ms = 1.5 + 4 * 0.5 + 2 * 2.5
    assert list(totals.mix_ms) == pytest.approx([mix_ms] * 3)
    assert rows["im2col"].mix_speedup == pytest.approx(12.0 / mix_ms)
    assert math.isnan(rows["winograd"].mix_speedup)
    choice = best_mix(frame()).set_index("case")
    assert choice.backend.to_dict() == {"stem": "fft", "block": "winograd", "head": "fft"}
    assert choice.loc["block", "weighted_ms"] == pytest.approx(2.0)
    assert choice.loc["block", "n_candidates"] == 2


def test_a_case_nobody_answers_accurately_leaves_the_mix_open():
    results = {b: dict(r) for b, r in RESULTS.items()}
    results["fft"]["stem"] = ("ok", 1.5, 0.5)
    results["im2col"]["stem"] = ("error", None, None)
    totals = model_totals(frame(results))
    assert totals.mix_ms.isna().all()
    assert pd.isna(best_mix(frame(results)).set_index("case").loc["stem", "backend"])
    # a custom tolerance lets it in
    loose = model_totals(frame(results), tolerance={"float32": 1.0})
    assert loose.mix_ms.notna().all()


def test_groups_by_batch_variant_and_run():
    both = pd.concat(
        [
            frame().assign(case=lambda d: d.case + "@n1"),
            frame().assign(case=lambda d: d.case + "@n8", median_ms=lambda d: d.median_ms * 8),
        ]
    )
    totals = model_totals(both)
    assert sorted(set(totals.batch)) == ["1", "8"]
    im2col = totals[totals.backend == "im2col"].set_index("batch").total_ms
    assert im2col["8"] == pytest.approx(8 * im2col["1"])
    two_runs = pd.concat([frame(run_id="a"), frame(run_id="b")])
    assert len(model_totals(two_runs)) == 6 and "run_id" in model_totals(two_runs).columns
    with pytest.raises(ValueError, match="more than one result for case 'stem' on im2col"):
        model_totals(pd.concat([frame(), frame()]))
    with pytest.raises(ValueError, match="lacks column"):
        model_totals(frame().drop(columns="rel_err"))


def test_count_defaults_to_one_and_layer_counts_detected():
    no_counts = frame().drop(columns="count")
    assert by_backend(model_totals(no_counts))["im2col"].total_ms == pytest.approx(6.0)
    assert not has_layer_counts(no_counts) and has_layer_counts(frame())


def test_render_is_a_rich_table_with_the_mix_line():
    df = frame()
    table = render(model_totals(df), best_mix(df))
    assert isinstance(table, Table)
    console = Console(width=160, record=True)
    console.print(table)
    text = console.export_text()
    assert "best per-layer mix" in text and "winograd ×4, fft ×3" in text
    assert "1 of 3 cases missing" in text and "1 outside tolerance" in text
    assert "cpu · float32 · forward" in text


def test_a_backend_with_nothing_ok():
    results = dict(RESULTS)
    results["cudnn"] = {case: ("unsupported", None, None) for case in COUNTS}
    row = by_backend(model_totals(frame(results)))["cudnn"]
    assert (row.n_ok, row.n_missing, row.n_out_of_tol) == (0, 3, 0)
    assert math.isnan(row.total_ms) and math.isnan(row.mix_speedup)


def test_a_backend_absent_from_the_device_is_no_model_total(row):
    import pandas as pd

    from convbench.analysis.modeltime import model_totals

    rows = []
    for case in ("a", "b"):
        rows.append(row(case=case, backend="naive", median=1.0))
        rows.append(
            {**row(case=case, backend="cudnn", status="unsupported"), "reason": "no CUDA device"}
        )
        rows.append(
            {**row(case=case, backend="fft", status="unsupported"), "reason": f"{case}: no"}
        )
    totals = model_totals(pd.DataFrame(rows).assign(count=2, batch=8))
    assert list(totals["backend"]) == ["naive", "fft"]  # fft misses cases; cudnn is not here
    naive = totals.set_index("backend").loc["naive"]
    assert naive["total_ms"] == pytest.approx(4.0, rel=0.02) and naive["batch_sizes"] == "8"
