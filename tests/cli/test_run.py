"""`convbench run` end to end: rows and statuses, isolation, kill -9 and resume, errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from convbench import results
from convbench.cli import main
from convbench.problem import load_suite


def test_run_stores_one_row_per_task(tiny_suite, tmp_path, capsys, fast):
    db = tmp_path / "r.sqlite"
    assert main(["run", str(tiny_suite), "--db", str(db), *fast]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run ")
    run_id = out.split()[1].rstrip(":")
    df = results.load(db, run_id)
    tasks = load_suite(tiny_suite).tasks()
    assert len(df) == len(tasks) == 2 * 2 * 4
    assert sorted(df.result_key) == sorted(t.key for t in tasks)
    ok = df[df.status == "ok"]
    assert set(ok.backend) == {"naive", "im2col", "onednn"}
    for column in (
        "median_ms",
        "peak_mem_bytes",
        "rel_err",
        "max_abs_err",
        "gflops",
        "n_samples",
        "stop_reason",
        "cpu_util_pct",
    ):
        assert ok[column].notna().all(), column
    assert (ok.rel_err < 1e-4).all()
    assert (ok.peak_mem_bytes > 0).all()
    # the median's 95% CI exists from 6 samples on (order statistics), and brackets it
    ci = ok[ok.n_samples >= 6]
    assert ci.ci_low_ms.notna().all()
    assert (ci.ci_low_ms <= ci.median_ms).all() and (ci.median_ms <= ci.ci_high_ms).all()
    cudnn = df[df.backend == "cudnn"]
    assert set(cudnn.status) == {"unsupported"}
    assert set(cudnn.reason) == {"no CUDA device"}
    assert (ok[ok.direction == "forward"].prepare_ms.notna()).all()
    # raw samples are stored and reproduce the median
    import statistics

    with_samples = results.load(db, run_id, samples=True)
    first = with_samples[with_samples.status == "ok"].iloc[0]
    assert len(first.samples_ms) == first.n_samples
    assert statistics.median(first.samples_ms) == pytest.approx(first.median_ms)


def test_failing_cases_become_rows_and_the_sweep_goes_on(
    tiny_suite, tmp_path, plugin_env, fast, run_cli
):
    db = tmp_path / "r.sqlite"
    proc = run_cli(
        [
            "run",
            str(tiny_suite),
            "--db",
            str(db),
            "--backends",
            "naive,buggy,crashy,sleepy",
            "--directions",
            "forward",
            "--timeout",
            "10",
            *fast,
        ],
        env=plugin_env,
    )
    assert proc.returncode == 0, proc.stderr
    df = results.load(db)
    by = {(r.case, r.backend): r for r in df.itertuples()}
    assert len(df) == 2 * 4
    for case in ("c2d", "c1d"):
        assert by[(case, "naive")].status == "ok"
        assert by[(case, "buggy")].status == "error"
        assert "deliberate bug in buggy backend" in by[(case, "buggy")].reason
        assert by[(case, "crashy")].status == "error"
        assert "exit code 7" in by[(case, "crashy")].reason
        assert by[(case, "sleepy")].status == "timeout"


def _count_rows(db):
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_sweep_then_resume(tiny_suite, tmp_path, run_cli):
    db = tmp_path / "r.sqlite"
    # slower sampling so that the kill lands mid-sweep
    args = [
        sys.executable,
        "-m",
        "convbench",
        "run",
        str(tiny_suite),
        "--db",
        str(db),
        "--max-time",
        "0.4",
        "--min-samples",
        "2000",
        "--warmup",
        "0.01",
        "--quiet",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _count_rows(db) < 3:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first_line = proc.stdout.read().splitlines()[0]
    run_id = first_line.split()[1].rstrip(":")
    partial = _count_rows(db)
    total = len(load_suite(tiny_suite).tasks())
    assert 3 <= partial < total

    done = run_cli(["run", "--db", str(db), "--resume", run_id, "--quiet"])
    assert done.returncode == 0, done.stderr
    df = results.load(db, run_id)
    assert len(df) == total
    assert df.result_key.is_unique
    assert sorted(df.result_key) == sorted(t.key for t in load_suite(tiny_suite).tasks())


def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[suite]\nname = "b"\n[[case]]\nname = "x"\nin_channels = 3\n'
        "out_channels = 4\nspatial = [8, 8]\nkernel = 3\ngroups = 2\n"
    )
    assert main(["run", str(bad), "--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("convbench: error:")
    assert "bad.toml" in err and "'x'" in err and "groups" in err
    assert main(["run", "no_such_suite", "--db", str(tmp_path / "r.sqlite")]) == 2
    assert main(["run", "--db", str(tmp_path / "r.sqlite"), "--resume", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no run 'nope'" in err


@pytest.mark.parametrize("moment", ["worker start-up", "mid-sweep"])
def test_ctrl_c_at_any_moment_stops_cleanly(tiny_suite, tmp_path, moment):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the worker is
    still starting, or in the middle of the sweep: exit 130, no traceback, and a --resume hint
    whenever a run was stored."""
    import psutil

    db = tmp_path / "r.sqlite"
    args = [
        sys.executable,
        "-m",
        "convbench",
        "run",
        str(tiny_suite),
        "--db",
        str(db),
        "--max-time",
        "0.5",
        "--min-samples",
        "2000",
        "--quiet",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None and time.monotonic() < deadline
        if moment == "worker start-up" and psutil.Process(proc.pid).children():
            break
        if moment == "mid-sweep" and _count_rows(db) >= 1:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    assert "interrupted" in err
    if moment == "mid-sweep":
        assert "--resume" in err
    if "nothing was stored" not in err:
        run_id = out.split()[1].rstrip(":")
        assert results.runs(db).set_index("run_id").loc[run_id, "status"] == "interrupted"
