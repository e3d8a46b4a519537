"""`convbench history` on a synthetic store: each result's medians over the runs, a step
found at the run where it was injected, flagged medians marked and left out of the search."""

from __future__ import annotations

import json

from convbench.cli import main
from convbench.measure.result import new_result
from convbench.problem.files import load_suite
from convbench.store import Store

BACKENDS = ("im2col", "winograd")


def make_store(path):
    """Twelve runs of two tasks on one host: im2col steps 25% slower from the 7th run on,
    winograd stays flat but for one flagged run twice as slow."""
    suite = load_suite("smoke")
    tasks = [t for t in suite.tasks(registered=list(BACKENDS), backends=list(BACKENDS))
             if t.case == suite.cases[0] and t.direction == "forward"]  # fmt: skip
    with Store(path) as store:
        for i in range(12):
            run_id = f"run{i:02d}"
            store.create_run(run_id, suite="smoke", suite_path=None, command="t", config={}, env={})
            store.conn.execute("UPDATE runs SET created_at=? WHERE run_id=?", (1000.0 + i, run_id))
            for task in tasks:
                wiggle = 1 + 0.01 * ((i * 7) % 3 - 1)
                ms = 2.0 * wiggle * (1.25 if task.backend == "im2col" and i >= 6 else 1.0)
                flagged = task.backend == "winograd" and i == 4
                row = new_result(task, status="ok", median_ms=ms * (2 if flagged else 1),
                                 node="host", threads=2, disturbed=int(flagged),
                                 reason="off pace" if flagged else None)  # fmt: skip
                row.update(run_id=run_id, suite="smoke")
                store.add_result(row)
    return path


def test_history_finds_the_step_and_marks_the_flagged_run(tmp_path, capsys):
    db = make_store(tmp_path / "h.sqlite")
    assert main(["history", "--db", str(db), "--format", "json"]) == 0
    series = {s["backend"]: s for s in json.loads(capsys.readouterr().out)}
    assert series["im2col"]["runs"] == [f"run{i:02d}" for i in range(12)]
    (change,) = series["im2col"]["changes"]
    assert change["run_id"] == "run06" and abs(change["ratio"] - 1.25) < 0.02
    assert series["winograd"]["changes"] == [] and series["winograd"]["flagged"][4]
    assert main(["history", "--db", str(db), "--changes"]) == 0
    out = capsys.readouterr().out
    assert "im2col" in out and "run06: 1.25×" in out and "winograd" not in out
    assert main(["history", "--db", str(db), "--backends", "winograd"]) == 0
    out = capsys.readouterr().out
    assert "4!" in out and "—" in out  # the flagged median marked; no change point


def test_the_report_has_a_history_section_with_the_step(tmp_path):
    from convbench.report import write_report

    db = make_store(tmp_path / "h.sqlite")
    html = write_report(db, ["run11"], tmp_path / "r.html").read_text()
    assert 'id="history"' in html and 'id="history-table"' in html
    section = html.split('id="history"')[1].split("</section>")[0]
    assert "run06: 1.25×" in section and "<svg" in section
