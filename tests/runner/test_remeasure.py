"""The re-measure pass at the end of a run, with a scripted worker and a real (in-memory)
store: the cases with flagged results measured again whole within the budget, a new
measurement of a case with fewer flagged results replacing the first (rows and samples, so
that the case's results still share their rounds), a worse or failed one keeping it."""

from __future__ import annotations

import pytest

from convbench.measure.options import measure_options
from convbench.measure.result import new_result
from convbench.measure.task import Samples
from convbench.problem.files import load_suite
from convbench.runner import session
from convbench.runner.remeasure import budgeted, task_s
from convbench.runner.session import RunPlan, execute
from convbench.store import Store
from convbench.store.frames import load

OPTIONS = measure_options(max_time_s=0.05, warmup_s=0.01)


class ScriptedWorker:
    """Answers each task's n-th measurement with ``script[backend][n]`` ("flagged", "clean",
    "error"; past the script's end: clean). Counts its starts and stops as a `Worker` would:
    a call after ``stop`` starts it again."""

    def __init__(self, script):
        self.script, self.seen, self.proc = script, {}, None
        self.starts = self.stops = 0

    def ensure(self):
        if self.proc is None:
            self.proc, self.starts = object(), self.starts + 1

    def stop(self):
        self.proc, self.stops = None, self.stops + 1

    def kill(self):
        pass

    def call(self, message, timeout_s):
        self.ensure()
        if message[0] == "env":
            return {"fake": True}
        if message[0] in ("peak", "bandwidth"):
            return 1.0, None
        return [self._answer(task) for task in message[1]]

    def _answer(self, task):
        n = self.seen.get(task.key, 0)
        self.seen[task.key] = n + 1
        steps = self.script.get(task.backend, [])
        what = steps[n] if n < len(steps) else "clean"
        if what == "error":
            return new_result(task, status="error", reason="boom", started_at=0.0), None
        flagged = what == "flagged"
        row = new_result(
            task,
            status="ok",
            median_ms=2.0 if flagged else 1.0,
            started_at=0.0,
            disturbed=int(flagged),
            reason="off pace: 30% slower" if flagged else None,
        )
        return row, Samples((2.0,) * 3 if flagged else (1.0,) * 3)  # fmt: skip


@pytest.fixture
def roomy(monkeypatch):
    """A budget for every case: the scripted sweep takes no time, so its quarter is none."""
    monkeypatch.setattr(session, "MIN_REMEASURE_S", 60.0)


def plan(remeasure_s=60.0, backends=("naive", "im2col", "onednn")):
    suite = load_suite("smoke")
    filters = {"backends": list(backends), "directions": ["forward"]}
    return RunPlan(suite, filters, OPTIONS, remeasure_s=remeasure_s)


def run(script, **kw):
    worker = ScriptedWorker(script)
    store = Store(None)
    result = execute(store, plan(**kw), "r", command="t", progress=False, workers=lambda: worker)
    return store, result, worker


def test_a_case_measured_again_with_fewer_flagged_results_replaces_the_first(roomy):
    store, result, worker = run({"im2col": ["flagged"], "onednn": ["flagged", "flagged"]})
    df = load(store, "r", samples=True)
    im2col, onednn = df[df.backend == "im2col"], df[df.backend == "onednn"]
    naive = df[df.backend == "naive"]
    assert (im2col.disturbed == 0).all() and (im2col.median_ms == 1.0).all()
    assert all(tuple(s) == (1.0, 1.0, 1.0) for s in im2col.samples_ms)  # samples replaced too
    assert im2col.reason.str.startswith("re-measured at the end of the run with its case").all()
    assert im2col.reason.str.contains("off pace: 30% slower").all()
    # the case's other results were measured again beside it, and stored with it
    assert (onednn.disturbed == 1).all() and onednn.reason.str.contains("with its case").all()
    assert naive.reason.str.contains("its first measurement was not flagged").all()
    assert all(worker.seen[key] == 2 for key in df.result_key)
    n_cases = len(df) // 3
    done = result.remeasured
    assert (done.flagged, done.tried, done.clean) == (2 * n_cases, 2 * n_cases, n_cases)
    n = 2 * n_cases
    assert done.line() == (
        f"re-measured {n} of {n} flagged result(s) with the {n_cases} other result(s) of "
        f"their cases: {n_cases} clean"
    )
    store.close()


def test_the_sweep_s_worker_measures_the_flagged_cases_again_without_a_second_start(roomy):
    store, result, worker = run({"im2col": ["flagged"]})
    assert result.remeasured.tried > 0
    assert (worker.starts, worker.stops) == (1, 1)  # lent to the sweep and the pass, stopped once
    store.close()


def test_a_case_no_better_the_second_time_keeps_its_first_measurement(roomy):
    store, result, _ = run({"im2col": ["flagged", "clean"], "onednn": ["clean", "flagged"]})
    df = load(store, "r")
    assert (df[df.backend == "im2col"].disturbed == 1).all()  # first measurements kept
    assert (df[df.backend == "onednn"].disturbed == 0).all() and df.reason.str.contains(
        "re-measured"
    ).sum() == 0
    assert result.remeasured.clean == 0
    store.close()


def test_a_failing_second_measurement_keeps_the_first():
    store, result, _ = run({"im2col": ["flagged", "error"]})
    df = load(store, "r")
    im2col = df[df.backend == "im2col"]
    assert (im2col.status == "ok").all() and (im2col.disturbed == 1).all()
    assert result.remeasured.clean == 0
    store.close()


def test_the_budget_bounds_the_pass_and_zero_turns_it_off():
    store, result, worker = run({"im2col": ["flagged"]}, remeasure_s=0.0)
    assert result.remeasured is None and max(worker.seen.values()) == 1
    store.close()
    groups = [[0, 1, 2]] * 4
    per_task = OPTIONS.timing.warmup_s + OPTIONS.timing.max_time_s + 0.25
    assert budgeted(groups, OPTIONS, 7 * per_task) == [[0, 1, 2]] * 2  # whole cases only
    store, result, _ = run({"im2col": ["flagged"]}, remeasure_s=7 * per_task)
    assert result.remeasured.tried == 2 and "not re-measured within" in result.remeasured.line()
    store.close()


def test_resume_of_a_finished_run_measures_its_flagged_results_again(roomy):
    worker = ScriptedWorker({"im2col": ["flagged", "flagged"]})
    with Store(None) as store:
        execute(store, plan(remeasure_s=0.0), "r", command="t", progress=False,
                workers=lambda: worker)  # fmt: skip
        assert (load(store, "r").disturbed == 1).sum() > 0
        again = execute(store, plan(), "r", command="t", resume=True, progress=False,
                        workers=lambda: worker)  # fmt: skip
        assert again.remeasured.flagged > 0
        assert again.remeasured.clean == 0  # the second measurement was flagged as well
        third = execute(store, plan(), "r", command="t", resume=True, progress=False,
                        workers=lambda: worker)  # fmt: skip
        assert third.remeasured.clean == third.remeasured.flagged > 0
        assert (load(store, "r").disturbed == 0).all()


def test_resume_budgets_a_share_of_the_run_s_sweep_not_of_this_session_s(monkeypatch):
    """A resumed finished run sweeps nothing in this session, so a share of this session's
    sweep would be nothing: the share is of the whole sweep, as budgeted per task."""
    monkeypatch.setattr(session, "MIN_REMEASURE_S", 0.0)
    worker = ScriptedWorker({"im2col": ["flagged", "clean"]})
    with Store(None) as store:
        execute(store, plan(remeasure_s=0.0), "r", command="t", progress=False,
                workers=lambda: worker)  # fmt: skip
        n_tasks = len(load(store, "r"))
        n_cases = n_tasks // 3
        again = execute(store, plan(), "r", command="t", resume=True, progress=False,
                        workers=lambda: worker)  # fmt: skip
        fits = int(session.SHARE * task_s(OPTIONS) * n_tasks // (3 * task_s(OPTIONS)))
        assert 0 < fits < n_cases
        assert (again.remeasured.tried, again.remeasured.clean) == (fits, fits)
