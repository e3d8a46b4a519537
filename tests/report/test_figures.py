"""The report's roofline (both measured roofs) and its peak-memory plot and table in one
unit. Synthetic results; the bandwidth probe itself runs for real on a small buffer."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from convbench.analysis.roofline import bandwidth_key, roof_gflops, roofline_points, split_peaks
from convbench.measure.options import MeasureOptions
from convbench.measure.peak import measure_bandwidth_gbs
from convbench.report import plots, render_report
from convbench.report.format import format_bytes, memory_unit
from convbench.results import COLUMN_RENAMES
from convbench.store import RESULT_FIELDS

COLUMNS = [COLUMN_RENAMES.get(c, c) for c in RESULT_FIELDS] + ["samples_ms"]


def frame(row, peak_mem_bytes=None) -> pd.DataFrame:
    rows = [
        row(case=case, backend=backend, median=median)
        for case in ("a", "b")
        for backend, median in (("naive", 3.0), ("winograd", 0.5), ("onednn", 1.5))
    ]
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    if peak_mem_bytes is not None:
        df["peak_mem_bytes"] = peak_mem_bytes
    return df


def run_record(peaks) -> dict:
    return {
        "run_id": "r1",
        "suite": "s",
        "status": "finished",
        "command": "convbench run s",
        "created_at": 1.8e9,
        "env": {},
        "config": {"options": MeasureOptions().to_dict()},
        "peaks": peaks,
    }


def roof_lines(fig):
    """(x, y) of every line drawn on the roofline's axes (seaborn's empty legend handles are
    lines too)."""
    (ax,) = fig.axes
    lines = [(np.asarray(line.get_xdata()), np.asarray(line.get_ydata())) for line in ax.lines]
    return [(x, y) for x, y in lines if len(x)]


def test_the_roofline_draws_the_measured_bandwidth_roof(row):
    peaks = {"r1": {"cpu/float32": 50.0, bandwidth_key("cpu"): 10.0}}
    points = roofline_points(frame(row), peaks)
    assert (points["bandwidth_gbs"] == 10.0).all()
    ((xs, ys),) = roof_lines(plots.roofline(points))
    # min(peak, bandwidth × intensity): sloped at 10 GB/s up to the ridge at 5 FLOP/byte
    assert xs.min() < 5.0 < xs.max()  # the bend is in view
    assert ys == pytest.approx(np.minimum(50.0, 10.0 * xs))
    assert ys[0] < 50.0 and ys[-1] == 50.0


def test_without_a_bandwidth_only_the_gemm_roof_and_a_note(row):
    points = roofline_points(frame(row), {"r1": {"cpu/float32": 50.0}})
    assert points["bandwidth_gbs"].isna().all()
    ((_, ys),) = roof_lines(plots.roofline(points))
    assert (ys == 50.0).all()
    html = render_report([run_record({"cpu/float32": 50.0})], frame(row))
    roofline = html[html.index('id="roofline"') : html.index('id="accuracy"')]
    assert re.search(
        r'<p class="note">no memory bandwidth measured for this run: only the '
        r"GEMM roof is drawn",
        roofline,
    )
    with_bw = render_report(
        [run_record({"cpu/float32": 50.0, "cpu/bandwidth_gbs": 9.5})], frame(row)
    )
    roofline = with_bw[with_bw.index('id="roofline"') : with_bw.index('id="accuracy"')]
    assert "no memory bandwidth" not in roofline
    assert "<dt>memory bandwidth</dt><dd>cpu: 9.5 GB/s</dd>" in with_bw
    assert "<dt>peak GEMM GFLOP/s</dt><dd>cpu/float32: 50</dd>" in with_bw


def test_roof_and_peaks_helpers():
    assert roof_gflops(50.0, 10.0, 2.0) == 20.0 and roof_gflops(50.0, 10.0, 20.0) == 50.0
    assert roof_gflops(50.0, None, 2.0) == 50.0 and roof_gflops(50.0, math.nan, 2.0) == 50.0
    gemm, bw = split_peaks(
        {
            "cpu/float32": 50.0,
            "cuda:0/float16": 900.0,
            "cpu/bandwidth_gbs": 10.0,
            "cuda:0/bandwidth_gbs": 3000.0,
        }
    )
    assert gemm == {"cpu/float32": 50.0, "cuda:0/float16": 900.0}
    assert bw == {"cpu": 10.0, "cuda:0": 3000.0}


def test_the_bandwidth_probe_measures_a_copy():
    gbs = measure_bandwidth_gbs("cpu", n_bytes=8 * 2**20)
    assert math.isfinite(gbs) and 0.1 < gbs < 10_000  # GB/s of any machine this runs on


def test_peak_memory_plot_and_table_share_one_unit(row):
    df = frame(row, peak_mem_bytes=3 * 2**10)  # 3 KiB: read in KiB, not 0.00293 MiB
    assert memory_unit(df["peak_mem_bytes"]) == ("KiB", 2**10)
    html = render_report([run_record({"cpu/float32": 50.0})], df)
    table = html[html.index('id="results-table"') :]
    assert "peak mem [KiB]" in table and "peak mem [MiB]" not in table
    assert re.search(r'<td class="num" data-v="3.0">3</td>', table)
    (ax,) = [
        a for a in plots.peak_memory(df, memory_unit(df["peak_mem_bytes"])).axes if a.get_xlabel()
    ]
    assert ax.get_xlabel() == "peak memory above baseline [KiB]"
    assert format_bytes(3 * 2**10) == "3.0 KiB" and format_bytes(33554432) == "32.0 MiB"
