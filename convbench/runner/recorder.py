"""`Recorder`: where the parent completes each result and stores it at once.

A result comes from the worker whole but for what only the parent knows: the run, the suite
and what else of the run computed beside it. `Recorder.record` adds those (the one place a
result is completed in the parent), commits it with its samples, counts it and tells the
listener. Results of tasks that never came back (timeout, dead worker) are made by
`Recorder.failed` with the worker's own constructor (`convbench.measure.task.new_result`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from convbench.measure.result import new_result
from convbench.problem.suite import Task
from convbench.store import STATUSES
from convbench.store.record import Result


@dataclass
class SweepResult:
    run_id: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    interrupted: bool = False
    skipped_done: int = 0
    #: The re-measure pass at the end (`convbench.runner.remeasure.Remeasured`), if it ran.
    remeasured: object = None


class Recorder:
    """Completes each result, writes it to the store at once and keeps the counts
    (thread-safe). ``store`` needs ``add_result(row, samples)``, ``finished_keys(run_id)``."""

    def __init__(
        self,
        store,
        run_id: str,
        suite_name: str,
        on_result: Callable[[int, Task, Result], None] | None = None,
    ):
        self.store, self.run_id, self.suite_name = store, run_id, suite_name
        self.on_result = on_result
        self.result = SweepResult(run_id)
        self.lock = threading.Lock()

    #: Whether a stored result of the same task gives way (`convbench.runner.remeasure`).
    replace = False

    def done_keys(self) -> set[str]:
        """The tasks the sweep need not measure: those the run already stored."""
        return self.store.finished_keys(self.run_id)

    def failed(self, task: Task, mode: str, status: str, reason: str) -> Result:
        """The result of a task that never came back from its worker."""
        now = time.time()
        return new_result(task, status=status, mode=mode, reason=reason, started_at=now)

    def record(
        self,
        index: int,
        task: Task,
        row: Result,
        samples=None,
        *,
        beside: str | None = None,
        note: str | None = None,
    ) -> None:
        """Complete ``row`` (run, suite; for an ok row what ran beside it, and ``note`` when
        it was measured alone after its group failed) and store it."""
        row = row if isinstance(row, Result) else Result(row)
        row.update(run_id=self.run_id, suite=self.suite_name)
        row.setdefault("finished_at", time.time())
        if row.get("status") == "ok":
            row["beside"] = beside
            if note:
                row["reason"] = note
        with self.lock:
            self.store.add_result(row, samples, replace=self.replace)
            counts = self.result.counts
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            if self.on_result:
                self.on_result(index, task, row)
