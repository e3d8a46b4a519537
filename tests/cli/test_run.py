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
from convbench.backends import backend_names
from convbench.cli import main
from convbench.problem import load_suite


def test_run_stores_one_row_per_task(tiny_suite, tmp_path, capsys, fast):
    db = tmp_path / "r.sqlite"
    assert main(["run", str(tiny_suite), "--db", str(db), *fast]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run ")
    run_id = out.split()[1].rstrip(":")
    df = results.load(db, run_id)
    tasks = load_suite(tiny_suite).tasks(registered=backend_names())
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
    tiny_suite, tmp_path, fast, plugins, warm_workers
):
    """A backend that raises, one that kills its worker and one that hangs past the limit
    (its worker killed): each an error or timeout row, the run going on past it — in this
    process (the worker's crash and kill are what is tested, not the parent's start-up), each
    task alone (a failed interleaved group measured again task by task: `tests/runner`)."""
    db = tmp_path / "r.sqlite"
    code = main(
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
            "2.5",  # a limit below 10 s is printed as given, not rounded to "2 s"
            "--no-interleave",
            *fast,
        ]
    )
    assert code == 0
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
        assert by[(case, "sleepy")].reason == "no result within 2.5 s; worker killed"


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
        "0.2",
        "--min-samples",
        "2000",
        "--warmup",
        "0.01",
        "--quiet",
        "--no-remeasure",
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
    total = len(load_suite(tiny_suite).tasks(registered=backend_names()))
    assert 3 <= partial < total

    done = run_cli(["run", "--db", str(db), "--resume", run_id, "--quiet", "--no-remeasure"])
    assert done.returncode == 0, done.stderr
    df = results.load(db, run_id)
    assert len(df) == total
    assert df.result_key.is_unique
    assert sorted(df.result_key) == sorted(
        t.key for t in load_suite(tiny_suite).tasks(registered=backend_names())
    )


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
    assert "r.sqlite: no such results database" in err


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


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--timeout", "-5"], "--timeout: expected a number of seconds > 0, got -5"),
        (["--timeout", "0"], "--timeout: expected a number of seconds > 0, got 0"),
        (["--max-time", "-1"], "--max-time: expected a number > 0, got -1.0"),
        (["--min-samples", "0"], "--min-samples: expected an integer >= 1, got 0"),
        (["--max-lost", "2"], "--max-lost: expected a number in (0, 1], got 2.0"),
        (["--max-pace", "0"], "--max-pace: expected a number > 0, got 0.0"),
        (["--backends", "nope"], "unknown backend 'nope'"),
    ],
)
def test_a_mistake_names_the_flag_and_leaves_no_store(tiny_suite, tmp_path, capsys, flags, message):
    db = tmp_path / "new.sqlite"
    assert main(["run", str(tiny_suite), "--db", str(db), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert "TimingConfig" not in err
    assert not db.exists() and not list(tmp_path.glob("new.sqlite*"))


def test_a_mistake_keeps_an_existing_store_as_it_was(tiny_suite, tmp_path, capsys, fast):
    db = tmp_path / "r.sqlite"
    assert main(["run", str(tiny_suite), "--db", str(db), "--backends", "naive", *fast]) == 0
    before = results.load(db)
    assert main(["run", "no_such_suite", "--db", str(db)]) == 2
    assert main(["run", str(tiny_suite), "--db", str(db), "--timeout", "-1"]) == 2
    assert len(results.load(db)) == len(before)


def test_reading_commands_never_create_or_write_a_store(tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for argv in (
        ["report", "--db", str(empty)],
        ["runs", "--db", str(empty)],
        ["compare", "--db", str(empty)],
        ["export", "--db", str(empty), "--out", str(tmp_path / "x.csv")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "empty.sqlite: empty file, not a convbench results database" in err
        assert empty.stat().st_size == 0
    assert main(["report", "--db", str(tmp_path / "missing.sqlite")]) == 2
    assert "no such results database" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite").exists()


def test_a_killed_run_shows_as_stale_and_resume_takes_it_over(tiny_suite, tmp_path, capsys, fast):
    import json

    from convbench.store import Store

    db = tmp_path / "r.sqlite"
    assert main(["run", str(tiny_suite), "--db", str(db), "--backends", "naive", *fast]) == 0
    run_id = results.runs(db).run_id.iloc[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that existed and is gone, like a run killed with kill -9
    with sqlite3.connect(db) as conn:
        owner = json.loads(conn.execute("SELECT owner_json FROM runs").fetchone()[0])
        assert owner["pid"] == os.getpid()
        owner.update(pid=dead.pid, started=owner["started"] - 5)
        conn.execute("UPDATE runs SET status='running', owner_json=?", (json.dumps(owner),))
        gone = [r[0] for r in conn.execute("SELECT result_key FROM results LIMIT 2")]
        for table in ("results", "samples"):  # as if killed before these two were stored
            conn.executemany(f"DELETE FROM {table} WHERE result_key=?", [(k,) for k in gone])
    capsys.readouterr()
    assert main(["runs", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "stale" in out and f"--resume {run_id}" in out
    # a live owner is never taken over
    with sqlite3.connect(db) as conn:
        live = dict(owner, pid=os.getpid(), started=None)
        conn.execute("UPDATE runs SET owner_json=?", (json.dumps(live),))
    assert results.runs(db).status.iloc[0] == "running"
    assert main(["run", "--db", str(db), "--resume", run_id, "--quiet"]) == 2
    assert "is still running" in capsys.readouterr().err
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET owner_json=?", (json.dumps(owner),))
    assert main(["run", "--db", str(db), "--resume", run_id, "--quiet"]) == 0
    with Store(db) as store:
        assert store.run(run_id)["status"] == "finished"
    assert len(results.load(db)) == len(
        load_suite(tiny_suite).tasks(registered=backend_names(), backends=["naive"])
    )
