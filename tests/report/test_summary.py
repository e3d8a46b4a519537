"""What the report answers first: per case what to use and whether to trust it, how many
results were flagged, the run's timing in words, and the rows of absent devices folded away.
Synthetic results, no store, no browser."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from convbench.cli import build_parser
from convbench.measure.options import MeasureOptions
from convbench.report import html as report_html
from convbench.report import render_report
from convbench.results import COLUMN_RENAMES
from convbench.store import RESULT_FIELDS

COLUMNS = [COLUMN_RENAMES.get(c, c) for c in RESULT_FIELDS] + ["samples_ms"]
OFF_PACE = (
    "off pace: the host ran the reference kernel 30% slower than usual while this was measured"
)


@pytest.fixture(autouse=True)
def no_svg(monkeypatch):
    """The figures are drawn but not written out as SVG (most of a render's time): these tests
    read the report's text; its figures are tested in test_html.py and test_figures.py."""
    monkeypatch.setattr(report_html, "to_svg", lambda fig: "<svg></svg>")


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def run_record(run_id="r1", peaks=None) -> dict:
    return {
        "run_id": run_id,
        "suite": "smoke",
        "status": "finished",
        "command": "convbench run smoke --threads 2",
        "created_at": 1.8e9,
        "env": {"devices": ["cpu: Test CPU"]},
        "config": {"options": MeasureOptions().to_dict(), "threads": 2},
        "peaks": {"cpu/float32": 50.0} if peaks is None else peaks,
    }


def section(html: str, ident: str) -> str:
    start = html.index(f'id="{ident}"')
    return html[start : html.index("</section>", start)]


def cpu_results(row, flag_winner=False) -> pd.DataFrame:
    """Two cases on a CPU: winograd 3× faster than onednn (the baseline), naive slower."""
    rows = []
    for case in ("conv_a", "conv_b"):
        for backend, median in (("naive", 3.0), ("winograd", 0.5), ("onednn", 1.5)):
            rows.append(row(case=case, backend=backend, median=median))
    df = frame(rows).astype({"reason": object})
    if flag_winner:
        hit = (df["case"] == "conv_b") & (df["backend"] == "winograd")
        df.loc[hit, "disturbed"] = 1
        df.loc[hit, "reason"] = OFF_PACE
    return df


def test_a_summary_line_per_case_comes_first(row):
    html = render_report([run_record()], cpu_results(row, flag_winner=True))
    assert html.index('id="summary"') < html.index('id="environment"')
    lines = re.findall(r"<li>(.*?)</li>", section(html, "summary"), re.S)
    text = [re.sub(r"<[^>]+>", "", line) for line in lines]
    assert len(text) == 2
    assert re.search(
        r"conv_a · forward · float32 · cpu: use winograd, 2\.\d+× faster than "
        r"the baseline \(onednn\), trustworthy: yes$",
        text[0],
    ), text[0]
    # the second case's winner was measured off pace: the same speedup, not to be trusted
    assert "conv_b · forward · float32 · cpu: use winograd" in text[1]
    assert text[1].endswith("trustworthy: no (off pace: winograd)"), text[1]


def test_a_difference_that_is_not_significant_is_not_trusted(row):
    rows = [row(case="c", backend="winograd", median=1.0, seed=1)]
    rows += [row(case="c", backend="onednn", median=1.001, seed=2)]
    html = render_report([run_record()], frame(rows))
    (line,) = re.findall(r"<li>(.*?)</li>", section(html, "summary"), re.S)
    assert 'trustworthy: <span class="trust-no">no</span>' in line
    assert "difference not significant" in line


def test_the_same_kernel_as_the_baseline_is_not_crowned(row):
    rows = [
        row(case=case, backend=backend, median=median)
        for case, fastest in (("c", 5.0), ("d", 0.3))  # naive wins case d on its own kernel
        for backend, median in (("torch", 0.9), ("onednn", 1.0), ("naive", fastest))
    ]
    df = frame(rows)
    df["dispatch"] = df["backend"].map({"torch": "Mkldnn", "onednn": "Mkldnn"})
    html = render_report([run_record()], df)
    summary = section(html, "summary")
    lines = re.findall(r"<li>(.*?)</li>", summary, re.S)
    assert "same kernel as baseline (Mkldnn)" in lines[0] and "use torch" not in summary
    assert "use naive, 3.33× faster than the baseline (onednn)" in lines[1]
    assert "same kernel" not in lines[1]
    winners = section(html, "winners")
    table = winners[winners.index('id="winner-table"') :]
    assert table.count("same kernel as baseline") == 1
    assert "torch: same kernel as baseline (Mkldnn)" in table
    counts = winners[winners.index('id="winner-summary"') : winners.index('id="winner-table"')]
    assert "same kernel as baseline 1" in counts and "torch 1" not in counts


def test_the_flagged_results_are_counted_at_the_top_with_real_advice(row):
    df = cpu_results(row, flag_winner=True)
    hit = (df["case"] == "conv_a") & (df["backend"] == "naive")
    df.loc[hit, "disturbed"] = 1
    df.loc[hit, "reason"] = (
        "disturbed: 5 of 40 samples that lost over 3% of their CPU time to other processes; "
        + OFF_PACE
    )
    html = render_report([run_record()], df)
    summary = section(html, "summary")
    count = re.search(r'<p class="flag-count note">(.*?)</p>', summary, re.S).group(1)
    assert "<b>2 of 6 results flagged (disturbed 1, off pace 2)</b>" in count
    # every command the advice names is one the command line accepts
    commands = re.findall(r"`(convbench [^`]+)`", count)
    assert "convbench calibrate --interference" in commands
    assert "convbench run smoke --threads 2" in commands  # the run's own, to run again
    for command in commands:
        build_parser().parse_args(command.split()[1:])
    clean = render_report([run_record()], cpu_results(row))
    assert "0 of 6 results flagged" in section(clean, "summary")


def test_the_timing_line_reads_as_text_with_units(row):
    html = render_report([run_record()], cpu_results(row))
    timing = re.search(r"<dt>timing</dt><dd>(.*?)</dd>", html).group(1)
    assert "=" not in timing  # no raw key=value dump
    assert timing.startswith("warm mode, warmup 50 ms, 10–1000 samples, ")
    assert "at most 1 s of samples per case" in timing and "within ±1%" in timing
    assert "interleaved rounds of 5 ms" in timing


def test_rows_unsupported_for_want_of_a_cuda_device_fold_away(row):
    df = cpu_results(row)
    absent = [row(case=c, backend="cudnn", status="unsupported") for c in ("conv_a", "conv_b")]
    refused = row(case="conv_a", backend="fft", status="unsupported")
    df = pd.concat([df, frame([*absent, refused])], ignore_index=True)
    df.loc[df["backend"] == "cudnn", "reason"] = "no CUDA device"
    df.loc[df["backend"] == "fft", "reason"] = "fft: dilation not supported"
    html = render_report([run_record()], df)
    results = section(html, "results")
    note = re.search(r'<p class="absent-note">(.*?)</p>', results, re.S).group(1)
    assert note.startswith("2 rows unsupported on this host (no CUDA device) — ")
    assert 'id="results-absent" type="checkbox"' in note  # unticked: folded by default
    rows = re.findall(r"<tr class=\"([^\"]*)\" data-status", results)
    assert sum("absent" in r.split() for r in rows) == 2
    assert len(rows) == 9  # every row is in the file, the two absent ones folded by CSS
    refused_row = re.search(r'<tr class="([^"]*)"[^>]*>(?:(?!</tr>).)*fft: dilation', results)
    assert "absent" not in refused_row.group(1).split()  # a backend refusing stays in view
    assert "#results-table:not(.show-absent) tr.absent { display: none; }" in html
    assert 'getElementById("results-absent")' in html  # the toggle is wired, inline


def test_no_fold_line_without_absent_rows(row):
    html = render_report([run_record()], cpu_results(row))
    assert 'class="absent-note"' not in html


@pytest.mark.parametrize("labels", [False, True])
def test_several_runs_get_a_line_each(row, labels):
    a = cpu_results(row).assign(run_id="ra")
    runs = [run_record("ra")]
    df = a
    if labels:
        b = cpu_results(row, flag_winner=True).assign(run_id="rb")
        runs.append(run_record("rb"))
        df = pd.concat([a, b], ignore_index=True)
    summary = section(render_report(runs, df), "summary")
    assert summary.count("<li>") == (4 if labels else 2)
    assert ("run B · conv_b" in summary) == labels
    assert summary.count('class="flag-count') == (2 if labels else 1)
