"""`convbench run --report` and `convbench report` end to end, and the page in a real browser.

One tiny run (hostile case and suite names included) is shared by the module's tests. The
browser test opens the report in headless Chromium (Debian's `chromium` package; `.ci/run`
installs it) and is skipped, saying so, only when Chromium is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from convbench.cli import main
from convbench.results import runs as list_runs
from convbench.store import Store

ALERT = "<script>alert(1)</script>"
# If this suite name ever ran as script, it would mark the page as injected.
INJECT = "<script>document.documentElement.setAttribute('data-injected','1')</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory, fast, tiny_suite_text, worker_pool):
    """A tiny run with hostile names, finished with ``--report``: (db, run_id, path, stdout)."""
    tmp = tmp_path_factory.mktemp("report")
    suite = tmp / "hostile.toml"
    suite.write_text(
        tiny_suite_text.replace('name = "tiny"', f'name = "{INJECT}"').replace(
            'name = "c2d"', f'name = "{ALERT}"'
        )
    )
    db = tmp / "r.sqlite"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp)  # the report goes to ./reports/: keep it out of the checkout
    try:
        with redirect_stdout(buf), worker_pool.patched():
            code = main(
                ["run", str(suite), "--db", str(db), "--directions", "forward", *fast, "--report"]
            )
    finally:
        os.chdir(cwd)
    out = buf.getvalue()
    assert code == 0, out
    run_id = list_runs(db).run_id.iloc[-1]
    match = re.search(r"report: (\S+\.html)", out.replace("\n", ""))
    assert match, out
    return db, run_id, tmp / match.group(1), out


def test_run_report_flag_writes_the_report_and_prints_its_path(reported_run):
    db, run_id, path, out = reported_run
    assert path.parts[-2:] == ("reports", f"{run_id}.html")  # the default place and name
    assert path.is_file()
    html = path.read_text(encoding="utf-8")
    assert run_id in html
    # the run measured the roofline's ceilings: the GEMM once per (device, dtype), the
    # memory bandwidth once per device
    with Store(db) as store:
        peaks = store.run(run_id)["peaks"]
    assert set(peaks) == {"cpu/float32", "cpu/bandwidth_gbs"}
    assert peaks["cpu/float32"] > 0 and peaks["cpu/bandwidth_gbs"] > 0
    assert "memory roof" in html or "bandwidth" in html


def test_report_command_is_self_contained_and_escaped(reported_run, tmp_path, capsys):
    db, run_id, _, _ = reported_run
    out = tmp_path / "sub" / "r.html"
    assert main(["report", "--db", str(db), run_id, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    for section in (
        "environment",
        "winners",
        "speedup",
        "roofline",
        "accuracy",
        "memory",
        "telemetry",
        "latency",
        "results",
    ):
        assert f'id="{section}"' in html, section
    assert html.count("<svg") >= 5
    assert "no GPU telemetry:" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and ALERT not in html
    assert "INJECT" not in html and INJECT not in html
    assert html.count("<script") == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    # the default is the latest run
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "latest.html")]) == 0
    assert run_id in (tmp_path / "latest.html").read_text(encoding="utf-8")


def test_several_runs_side_by_side(reported_run, tmp_path):
    db, run_id, _, _ = reported_run
    copy = tmp_path / "two.sqlite"
    shutil.copy(db, copy)
    other = run_id + "-b"
    with sqlite3.connect(copy) as conn:  # the same results as if from a second machine
        for table in ("runs", "results", "samples"):
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            select = ", ".join("?" if c == "run_id" else c for c in columns)
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"SELECT {select} FROM {table} WHERE run_id = ?",
                (other, run_id),
            )
    out = tmp_path / "two.html"
    assert main(["report", "--db", str(copy), run_id, other, "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert f"A · {run_id}" in html and f"B · {other}" in html
    assert html.count('data-plot="speedup"') == 2
    assert "run B vs run A" in html and "slower" not in re.findall(r"class=\"verdict-(\w+)", html)


def test_unknown_run_is_a_user_error(reported_run, capsys):
    db, _, _, _ = reported_run
    assert main(["report", "--db", str(db), "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_open_without_a_browser_says_so(monkeypatch, tmp_path):
    import webbrowser

    from rich.console import Console

    from convbench.cli.report import open_in_browser

    def no_browser(*args, **kwargs):
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    console = Console(record=True, width=200)
    assert open_in_browser(tmp_path / "r.html", console) is False
    assert "no browser found" in console.export_text()


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium); the browser test needs it",
)
def test_report_in_a_real_browser(reported_run, tmp_path):
    _, _, page, _ = reported_run  # the page `convbench run --report` wrote
    url = page.resolve().as_uri()

    shot = tmp_path / "shot.png"
    proc = _chromium(
        [
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1400,3000",
            url,
        ],
        tmp_path / "profile1",
    )
    assert shot.is_file() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the page logs nothing: no uncaught error, no CSP violation, no failed load
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert "Uncaught" not in proc.stderr

    proc = _chromium(["--dump-dom", url], tmp_path / "profile2")
    dom = proc.stdout
    assert dom.strip(), proc.stderr[-2000:]
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-report-script="ran"' in html_tag  # our script ran...
    assert "data-injected" not in html_tag  # ...and the suite name's did not
    results = re.search(r'<table[^>]*id="results-table"[^>]*>', dom).group(0)
    assert 'data-sortable="ready"' in results and 'data-shown="6"' in results  # 2 cudnn rows folded
    assert re.search(r'<table[^>]*id="winner-table"[^>]*data-sortable="ready"', dom)
    assert dom.count("<svg") >= 5  # inline plots are in the live DOM
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown as text
    assert ALERT not in dom
