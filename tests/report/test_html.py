"""The report, rendered from synthetic results: no store, no files, no browser."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from matplotlib.figure import Figure

from convbench import analysis
from convbench.report import html as report_html
from convbench.report import plots, render_report, script_hash
from convbench.report.figure import to_svg
from convbench.results import COLUMN_RENAMES
from convbench.store import RESULT_FIELDS

HOSTILE = "<script>alert(1)</script>"
COLUMNS = [COLUMN_RENAMES.get(c, c) for c in RESULT_FIELDS] + ["samples_ms"]


def results(row, run_id="r1", device="cpu", telemetry=False) -> pd.DataFrame:
    rows = []
    for case in (HOSTILE, "plain"):
        for backend, median in (("naive", 3.0), ("im2col", 1.0), ("winograd", 0.5)):
            rows.append(row(case=case, backend=backend, median=median, run_id=run_id))
        vendor = analysis.vendor_backend(device)
        rows.append(row(case=case, backend=vendor, median=1.5, run_id=run_id))
        rows.append(row(case=case, backend="fft", status="unsupported", run_id=run_id))
    df = pd.DataFrame(rows).assign(
        device=device,
        suite="<b>suite</b>",
        peak_mem_bytes=2**20,
        iqr_ms=0.01,
        n_samples=40,
        mode="warm",
        stop_reason="ci",
    )
    if telemetry:
        df = df.assign(gpu_util_pct=80.0, power_w=250.0)
    return df.reindex(columns=COLUMNS)


@pytest.fixture
def no_svg(monkeypatch):
    """The figures drawn but not written out as SVG (most of a render's time), for the tests
    that read the report's text and tables: the SVGs themselves are checked (inlined, escaped,
    text as paths) by the tests without it."""
    monkeypatch.setattr(report_html, "to_svg", lambda fig: "<svg></svg>")


def run_record(run_id="r1", peaks=None) -> dict:
    return {
        "run_id": run_id,
        "suite": "<b>suite</b>",
        "status": "finished",
        "command": f"convbench run '{HOSTILE}'",
        "created_at": 1.8e9,
        "env": {"devices": ["cpu: Test CPU"], "torch": "2.x", "git_commit": "abc123"},
        "config": {"options": {"timing": {"mode": "warm"}}, "threads": 2},
        "peaks": {"cpu/float32": 50.0} if peaks is None else peaks,
    }


def test_every_plot_function_returns_a_figure(row):
    df = results(row, telemetry=True)
    sp = analysis.speedups(df)
    figures = [
        plots.speedup_heatmap(sp),
        plots.roofline(analysis.roofline_points(df, {"r1": {"cpu/float32": 50.0}})),
        plots.accuracy_vs_speed(df),
        plots.peak_memory(df),
        plots.gpu_telemetry(df),
        plots.latency_distributions(df),
        plots.speedup_heatmap(sp.iloc[0:0]),  # nothing to show is a figure too
    ]
    assert all(isinstance(f, Figure) for f in figures)
    svg = to_svg(figures[0])
    assert svg.startswith("<svg") and "<!--" not in svg and "<script" not in svg


@pytest.fixture(scope="module")
def report(row) -> str:
    """The report of `results` with its figures, rendered once for the tests that only read it."""
    return render_report([run_record()], results(row), db="x.sqlite")


def test_report_escapes_values_and_allows_only_its_own_script(report):
    html = report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE not in html and "<b>suite</b>" not in html
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1 and html.count("<script") == 1
    assert f"script-src '{script_hash(scripts[0])}'" in html
    assert "default-src 'none'" in html
    # self-contained: nothing is loaded from anywhere (xmlns is a name, not a request)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html


def test_report_has_every_section_with_real_content(report):
    html = report
    for section in ("environment", "winners", *plots_ids(), "results"):
        assert f'id="{section}"' in html, section
    assert html.count("<svg") >= 5
    assert "no GPU telemetry: this run measured no CUDA device" in html
    assert "GEMM peak 50 GFLOP/s" not in html  # drawn as a path, not text
    assert "cpu/float32: 50" in html  # the header lists the measured peak
    assert "abc123" in html and "convbench run" in html  # commit and command line
    # the winner is the fastest backend within tolerance: winograd, 3x over onednn
    winner = re.search(r'id="winner-table".*?</table>', html, re.S).group(0)
    assert "winograd" in winner and re.search(r">(2\.9\d|3|3\.0\d)×<", winner)
    # every result is in the table, with its status and reason; units in the headers
    table = re.search(r'id="results-table".*?</table>', html, re.S).group(0)
    assert table.count('data-status="unsupported"') == 2
    assert "not supported" in table
    assert "median [ms]" in table and "peak mem [MiB]" in table and "power [W]" in table
    assert "host pace [µs]" in table and "pace vs usual" in table


def test_a_result_shows_the_host_pace_it_was_measured_at(row, no_svg):
    df = results(row).assign(pace_us=41.25, pace=1.3125)
    table = re.search(
        r'id="results-table".*?</table>', render_report([run_record()], df, db="x"), re.S
    ).group(0)
    assert ">41.25<" in table and ">1.312<" in table


def plots_ids():
    from convbench.report import SECTIONS

    return list(SECTIONS)


def test_gpu_telemetry_and_several_runs_side_by_side(row, no_svg):
    a = results(row, "ra", device="cuda:0", telemetry=True)
    b = results(row, "rb", device="cuda:0", telemetry=True)
    b["result_key"] = a["result_key"]
    html = render_report([run_record("ra", {}), run_record("rb", {})], pd.concat([a, b]))
    assert "no GPU telemetry" not in html
    assert html.count('data-plot="telemetry"') == 2
    assert "A · ra" in html and "B · rb" in html
    assert 'id="comparison"' in html and "run B vs run A" in html
    assert "A: winner" in html and "B: winner" in html


@pytest.mark.parametrize("value", ["<img src=x onerror=alert(1)>", '"><svg onload=alert(1)>'])
def test_any_hostile_text_is_escaped(value, row):
    df = results(row).assign(reason=value)
    html = render_report([run_record()], df)
    assert value not in html
    assert "onerror=alert(1)&gt;" in html or "onload=alert(1)&gt;" in html


def test_whole_model_section_only_with_layer_counts(row, no_svg):
    df = results(row)
    assert 'id="model"' not in render_report([run_record()], df)
    counted = df.assign(count=df["case"].map({HOSTILE: 3, "plain": 1}))
    html = render_report([run_record()], counted)
    assert 'id="model"' in html and "Whole model" in html
    section = html[html.index('id="model"') : html.index("</section>", html.index('id="model"'))]
    # winograd is fastest on both cases: the mix is winograd alone, 3 × 0.5 + 1 × 0.5 ≈ 2 ms,
    # twice as fast as im2col (3 × 1 + 1 × 1 ≈ 4 ms); fft measured nothing and says so
    (wino,) = re.findall(r"<tr><td>r1</td>.*?<td>winograd</td>.*?</tr>", section)
    total, mix, speedup = (float(v) for v in re.findall(r'data-v="([0-9.e+-]+)"', wino)[1:4])
    assert total == pytest.approx(2.0, rel=0.05) and mix == total and speedup == 1.0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;, plain" in section
    assert "<th>layout</th>" in section and "<td>contiguous</td>" in wino  # one row per layout


def test_a_cpu_only_run_shows_no_cuda_switches(row, no_svg):
    import re as _re

    record = run_record()
    record["env"] = {
        "cuda_devices": [],
        "cuda_available": False,
        "tf32_cudnn": True,
        "tf32_matmul": False,
        "float32_matmul_precision": "highest",
        "fp32_precision": {"cudnn.conv": "tf32", "mkldnn.conv": "none"},
    }
    html = render_report([record], results(row))
    flags = _re.search(r"<dt>flags</dt><dd>(.*?)</dd>", html).group(1)
    assert "tf32" not in flags and "cudnn" not in flags
    assert "float32_matmul_precision=highest" in flags and "mkldnn.conv=none" in flags


def test_winner_summary_details_and_flagged_results(row, no_svg):
    df = results(row)
    flagged = (df["case"] == "plain") & (df["backend"] == "winograd")
    df.loc[flagged, "disturbed"] = 1
    df.loc[flagged, "reason"] = "unsteady: the median moved 30% between stretches"
    html = render_report([run_record()], df)
    summary = html[html.index('id="winner-summary"') : html.index('id="winner-details"')]
    assert "winograd 2" in summary  # fastest in both cases
    assert '<details id="winner-details" open>' in html  # a short map is shown whole
    assert "1× (baseline)" not in summary
    winners = html[
        html.index('id="winner-table"') : html.index("</table>", html.index('id="winner-table"'))
    ]
    assert winners.count("⚑") == 1  # the plain case's winner was measured disturbed
    results_html = html[html.index('id="results-table"') :]
    assert 'id="results-details"' in html and 'class="detail"' in results_html
    assert results_html.count('class="status-ok flagged"') == 1
    # a big sweep's map starts folded under its summary
    many = pd.concat([df.assign(case=df["case"] + str(i)) for i in range(25)])  # 50 cases
    assert '<details id="winner-details">' in render_report([run_record()], many)
