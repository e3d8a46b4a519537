"""`convbench compare` end to end: backends within a run, two runs, and the regression gate.

Two runs of the test backend `slowed` (F.conv plus a busy wait of SLOWED_EXTRA_S seconds,
registered by `plugins_in_process`): run A waits 0.5 ms per call, run B 5 ms, so B is
a deliberate, large regression that `--fail-on-regression 5%` must catch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest

from convbench.cli import main
from convbench.results import runs as list_runs

BACKENDS = "slowed,im2col,onednn"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, fast, tiny_suite_text, plugins_factory, plugin_root, worker_pool):
    """(db, run A, run B, None): `slowed` is 10x slower per call in run B. Both runs in this
    process on one warm worker, the test backend registered here and in the worker
    (`plugins_in_process`); its wait is in the file ``slowed_extra_s`` it reads at each call."""
    tmp = tmp_path_factory.mktemp("compare")

    suite = tmp / "tiny.toml"
    suite.write_text(tiny_suite_text)
    db = tmp / "r.sqlite"
    ids = []
    for extra_s in ("0.0005", "0.005"):
        # More samples than fast gives, on one thread: the gate must hold on a busy machine.
        more = ["--max-time", "0.4", "--min-samples", "10", "--threads", "1"]
        with plugins_factory(plugin_root), worker_pool.patched():
            (plugin_root / "slowed_extra_s").write_text(extra_s)
            args = ["run", str(suite), "--db", str(db), "--backends", BACKENDS]
            with contextlib.redirect_stdout(io.StringIO()):
                assert main([*args, "--directions", "forward", *fast, *more]) == 0
        ids.append(list_runs(db).run_id.iloc[-1])
    (plugin_root / "slowed_extra_s").unlink()
    return db, ids[0], ids[1], None


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def compare(args, capsys) -> Result:
    """`convbench compare ARGS` in this process (it needs no backend, so no plugin)."""
    capsys.readouterr()
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def test_regression_gate_catches_the_slowed_backend(two_runs, capsys):
    db, a, b, _ = two_runs
    proc = compare(["--db", str(db), a, b, "--fail-on-regression", "5%"], capsys)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "gate regression at 5%" in proc.stderr and "exit 1" in proc.stderr
    assert "gate: regression: c2d slowed" in proc.stderr
    data = json.loads(compare(["--db", str(db), a, b, "--format", "json"], capsys).stdout)
    slowed = [r for r in data["results"] if r["backend"] == "slowed"]
    assert len(slowed) == 2
    for r in slowed:
        assert r["verdict"] == "slower" and r["significant"] and r["ratio"] > 2
    assert data["counts"]["slower"] >= 2 and data["old"] == a and data["new"] == b
    # the slow-down is far beyond 5% but not beyond 10000%: pass, or inconclusive where a run
    # flagged the result (this host's pace), never a regression
    proc = compare(
        ["--db", str(db), a, b, "--backends", "slowed", "--fail-on-regression", "10000%"], capsys
    )
    assert proc.returncode in (0, 3), proc.stderr
    data = json.loads(compare(["--db", str(db), a, b, "--backends", "slowed", "--format", "json",
                               "--fail-on-regression", "10000%"], capsys).stdout)  # fmt: skip
    assert {r["gate"] for r in data["results"]} <= {"pass", "inconclusive"}
    assert all(r["gate"] == "pass" or r["flagged"] for r in data["results"])


def test_a_run_compared_with_itself_has_no_regression(two_runs, capsys):
    db, a, _, _ = two_runs
    proc = compare(["--db", str(db), a, a, "--fail-on-regression", "5%"], capsys)
    assert proc.returncode in (0, 3), proc.stderr  # 3: a result this host flagged
    assert "gate: regression" not in proc.stderr
    assert "slower" not in proc.stdout.split("verdict")[-1].replace("slower/faster", "")
    data = json.loads(compare(["--db", str(db), a, a, "--format", "json"], capsys).stdout)
    assert data["counts"]["slower"] == 0 and data["counts"]["faster"] == 0
    matched = [r for r in data["results"] if r["verdict"] != "missing"]
    assert matched and all(r["ratio"] == 1.0 and not r["significant"] for r in matched)


def test_backends_within_a_run_with_geomeans_and_marks(two_runs, capsys):
    db, _, b, _ = two_runs
    proc = compare(["--db", str(db), "--backends", "slowed,im2col"], capsys)  # latest run: B
    assert proc.returncode == 0, proc.stderr
    assert "geometric mean speedup per backend" in proc.stdout and b in proc.stdout
    assert "~ not significant" in proc.stdout
    data = json.loads(
        compare(["--db", str(db), b, "--backends", "slowed", "--format", "json"], capsys).stdout
    )
    assert data["run_id"] == b
    (geo,) = data["geomeans"]
    assert geo["backend"] == "slowed" and geo["baseline"] == "onednn" and geo["n_cases"] == 2
    # 5 ms of busy wait per call: far slower than oneDNN on these tiny problems, and real
    assert geo["geomean_speedup"] < 0.5 and geo["significant"]
    assert {r["case"] for r in data["speedups"]} == {"c2d", "c1d"}
    # an explicit baseline
    data = json.loads(
        compare(["--db", str(db), b, "--baseline", "slowed", "--format", "json"], capsys).stdout
    )
    assert {g["backend"] for g in data["geomeans"]} == {"im2col", "onednn"}
    assert all(g["baseline"] == "slowed" and g["geomean_speedup"] > 2 for g in data["geomeans"])


def test_markdown_and_csv(two_runs, capsys):
    db, a, b, _ = two_runs
    md = compare(["--db", str(db), a, b, "--format", "markdown"], capsys).stdout
    assert "| case | backend | A | B | B/A time |" in md and "|---|" in md
    rows = list(
        csv.DictReader(io.StringIO(compare(["--db", str(db), a, "--format", "csv"], capsys).stdout))
    )
    assert {r["row_type"] for r in rows} == {"case", "geomean"}
    assert {r["backend"] for r in rows} == {"slowed", "im2col"}
    rows = list(
        csv.DictReader(
            io.StringIO(compare(["--db", str(db), a, b, "--format", "csv"], capsys).stdout)
        )
    )
    assert {"verdict", "ratio", "p_value"} <= set(rows[0])


def test_user_errors(two_runs, capsys):
    db, a, b, _ = two_runs
    for args, message in [
        ([a, "--fail-on-regression", "5%"], "needs two runs"),
        ([a, b, a], "one run or two"),
        ([a, "--backends", "nope"], "no results for nope"),
        (["nope"], "no run 'nope'"),
    ]:
        proc = compare(["--db", str(db), *args], capsys)
        assert proc.returncode == 2, args
        assert message in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(SystemExit) as exc:  # argparse rejects the value itself
        main(["compare", "--db", str(db), a, b, "--fail-on-regression", "lots"])
    assert exc.value.code == 2
    assert "expected a percentage such as 5%, got 'lots'" in capsys.readouterr().err


def test_two_runs_say_how_fast_the_host_ran_in_each(two_runs, capsys):
    """Every CPU result carries the reference kernel's reading (`convbench.measure.pace`);
    a two-run comparison prints both runs' and the JSON carries them."""
    import sqlite3

    db, a, b, _ = two_runs
    data = json.loads(compare(["--db", str(db), a, b, "--format", "json"], capsys).stdout)
    with sqlite3.connect(db) as con:
        readings = {
            run: sorted(
                v
                for (v,) in con.execute(
                    "SELECT pace_us FROM results WHERE run_id = ? AND status = 'ok'", (run,)
                )
            )
            for run in (a, b)
        }
    assert all(v and v > 0 for values in readings.values() for v in values)
    for side, run in (("old", a), ("new", b)):
        values = readings[run]
        mid = len(values) // 2
        median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        assert data["host_pace_us"][side] == pytest.approx(median)
    text = compare(["--db", str(db), a, b], capsys).stdout
    assert f"reference kernel read {data['host_pace_us']['old']:.1f} µs in A" in text
