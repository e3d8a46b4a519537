"""The sweep's orchestration with fakes: a scripted worker and a real (in-memory) store.

No process is spawned here; tests/cli/test_run.py keeps the end-to-end runs (kill -9, Ctrl-C,
--resume) on real workers."""

from __future__ import annotations

import pytest

from convbench.backends import backend_names
from convbench.measure.options import measure_options
from convbench.measure.result import new_result
from convbench.problem.files import load_suite
from convbench.runner.session import RunPlan, execute
from convbench.runner.sweep import Execution, Recorder, format_seconds, sweep
from convbench.runner.worker import WorkerDied
from convbench.store import Store

OPTIONS = measure_options(max_time_s=0.01)


class FakeWorker:
    """Answers ``("tasks", tasks, options)`` with ok rows; ``script`` maps a backend to what
    a group holding it does instead: "timeout", "die" or "interrupt" (Ctrl-C)."""

    made: list[FakeWorker] = []

    def __init__(self, script=None):
        self.script = script or {}
        self.proc = object()
        self.calls: list[list[str]] = []
        self.stopped = self.killed = False
        FakeWorker.made.append(self)

    def ensure(self):
        self.proc = self.proc or object()

    def call(self, message, timeout_s):
        kind = message[0]
        if kind == "env":
            return {"fake": True}
        if kind in ("peak", "bandwidth"):
            return 1.0, None
        tasks = message[1]
        self.calls.append([t.backend for t in tasks])
        for task in tasks:
            action = self.script.get(task.backend)
            if action == "timeout":
                self.kill()
                raise TimeoutError
            if action == "die":
                self.kill()
                raise WorkerDied(-9)
            if action == "interrupt":
                raise KeyboardInterrupt
        return [(new_result(t, status="ok", median_ms=1.0, started_at=0.0), None) for t in tasks]

    def kill(self):
        self.killed, self.proc = True, None

    def stop(self):
        self.stopped = True


def tasks_of(backends=("naive", "im2col", "onednn"), directions=("forward", "backward_data")):
    suite = load_suite("smoke")
    return suite.tasks(
        registered=backend_names(), backends=list(backends), directions=list(directions)
    )[:6]


def run(tasks, store, script=None, *, on_start=None, run_id="r"):
    worker = FakeWorker(script)
    recorder = Recorder(store, run_id, "smoke")
    result = sweep(tasks, recorder, OPTIONS, workers=lambda: worker, on_start=on_start)
    return result, worker


def test_groups_go_to_the_worker_in_suite_order_and_every_row_is_completed():
    tasks, started = tasks_of(), []
    with Store(None) as store:
        result, worker = run(tasks, store, on_start=lambda i, t: started.append(i))
        rows = {r["result_key"]: r for r in store.result_rows("r")}
    assert started == list(range(len(tasks)))
    assert worker.calls == [["naive", "im2col", "onednn"], ["naive", "im2col", "onednn"]]
    assert result.counts["ok"] == len(tasks) and not result.interrupted
    assert {r["run_id"] for r in rows.values()} == {"r"}
    assert {r["suite"] for r in rows.values()} == {"smoke"}
    assert all(r["finished_at"] is not None for r in rows.values())
    assert worker.stopped


def test_resume_measures_only_what_is_not_stored():
    tasks = tasks_of()
    with Store(None) as store:
        run(tasks[:2], store)
        result, worker = run(tasks, store)
    assert result.skipped_done == 2
    assert worker.calls == [["onednn"], ["naive", "im2col", "onednn"]]


@pytest.mark.parametrize("failure, status", [("timeout", "timeout"), ("die", "error")])
def test_a_failed_group_is_measured_alone_and_only_the_culprit_gets_the_row(failure, status):
    tasks = tasks_of(directions=("forward",))[:3]
    with Store(None) as store:
        result, worker = run(tasks, store, {"im2col": failure})
        rows = {r["backend"]: r for r in store.result_rows("r")}
    assert worker.calls == [["naive", "im2col", "onednn"], ["naive"], ["im2col"], ["onednn"]]
    assert rows["im2col"]["status"] == status
    assert rows["im2col"]["mode"] == OPTIONS.timing.mode
    for ok in ("naive", "onednn"):
        assert rows[ok]["status"] == "ok"
        assert rows[ok]["reason"].startswith("measured alone: its group of 3 failed (")
    assert result.counts == {"ok": 2, "unsupported": 0, "oom": 0, "error": 0, "timeout": 0} | {
        status: 1
    }


def test_ctrl_c_keeps_what_was_stored_and_kills_the_worker():
    tasks = tasks_of(backends=("naive", "onednn"), directions=("forward", "backward_data"))
    worker = FakeWorker()
    with Store(None) as store:
        recorder = Recorder(store, "r", "smoke")

        def on_start(index, task):
            if index == 2:  # the second group: Ctrl-C while it is measured
                worker.script["naive"] = "interrupt"

        result = sweep(tasks[:4], recorder, OPTIONS, workers=lambda: worker, on_start=on_start)
        stored = store.result_rows("r")
    assert result.interrupted and worker.killed
    assert len(stored) == 2 and result.counts["ok"] == 2


def test_execute_creates_the_run_measures_peaks_and_finishes_it_with_fakes():
    FakeWorker.made.clear()
    plan = RunPlan(load_suite("smoke"), {"backends": ["naive"], "directions": ["forward"]})
    with Store(None) as store:
        result = execute(store, plan, "run-1", command="test", progress=False, workers=FakeWorker)
        record = store.run("run-1")
        n = len(store.result_rows("run-1"))
    assert result.counts["ok"] == n == len(plan.tasks())
    assert record["status"] == "finished" and record["env"] == {"fake": True}
    assert record["peaks"]["cpu/float32"] == 1.0
    assert len(FakeWorker.made) == 1  # the run's worker also served the sweep


def test_an_unknown_executor_is_refused():
    with Store(None) as store, pytest.raises(ValueError, match="unknown executor 'nope'"):
        sweep(tasks_of(), Recorder(store, "r", "s"), OPTIONS, Execution(kind="nope"))


@pytest.mark.parametrize(("seconds", "shown"), [(0.5, "0.5 s"), (2.5, "2.5 s"), (12.34, "12 s")])
def test_a_time_limit_is_shown_readably(seconds, shown):
    # A limit under 10 s keeps its digits ("0.5 s", never "0 s"); a longer one is whole.
    assert format_seconds(seconds) == shown
