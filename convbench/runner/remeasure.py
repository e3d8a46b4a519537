"""Re-measuring a run's flagged results at its end, once the host may have calmed down.

A result the timing flagged (too many disturbed samples, an unsteady median, the host off its
usual pace: `convbench.measure.flags`) says what the machine did then, and a regression gate
cannot judge it (`convbench.analysis.gate`: ``inconclusive``). After the sweep, `remeasure`
measures such results once more, in suite order, within a time budget (``--remeasure-time``,
and a quarter of the sweep's own time: `convbench.runner.session`; 0 turns it off): a new
measurement that is ``ok`` and unflagged replaces the stored one (the row and its samples,
in one transaction), with a note in its reason saying so; otherwise the first measurement
stays. ``--resume`` of a finished run does the same for its flagged results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from convbench.measure.options import MeasureOptions
from convbench.problem.suite import Task
from convbench.runner.recorder import Recorder
from convbench.runner.sweep import Execution, sweep
from convbench.store.record import Result

#: What `remeasure` budgets per task beyond the sampling cap: warm-up, planning, checking.
OVERHEAD_S = 0.25


@dataclass
class Remeasured:
    """What the pass did: results flagged, re-measured (within the budget), now clean."""

    flagged: int = 0
    tried: int = 0
    clean: int = 0
    interrupted: bool = False

    def line(self) -> str:
        if not self.flagged:
            return ""
        left = self.flagged - self.tried
        text = f"re-measured {self.tried} of {self.flagged} flagged result(s): {self.clean} clean"
        if left:
            text += f"; {left} not re-measured within the budget (--remeasure-time)"
        return text


class Replacing(Recorder):
    """Stores a re-measured result in place of the flagged one only where it is ok and
    unflagged; counts the others, which keep their first measurement."""

    def __init__(self, store, run_id: str, suite_name: str, reasons: dict[str, str]):
        super().__init__(store, run_id, suite_name)
        self.reasons = reasons
        self.clean = 0

    def done_keys(self) -> set[str]:
        return set()  # every task handed over is measured again

    replace = True

    def record(self, index, task, row, samples=None, *, beside=None, note=None) -> None:
        row = row if isinstance(row, Result) else Result(row)
        if row.get("status") != "ok" or row.get("disturbed"):
            return
        first = self.reasons.get(task.key) or "flagged"
        note = f"re-measured at the end of the run; the first measurement was flagged ({first})"
        super().record(index, task, row, samples, beside=beside, note=note)
        self.clean += 1


def budgeted(tasks: Sequence[Task], options: MeasureOptions, budget_s: float) -> list[Task]:
    """The first of ``tasks`` whose sampling caps (plus `OVERHEAD_S` each) fit ``budget_s``."""
    per_task = options.timing.warmup_s + options.timing.max_time_s + OVERHEAD_S
    return list(tasks[: max(0, int(budget_s // per_task))])


def remeasure(
    store,
    run_id: str,
    suite_name: str,
    tasks: Sequence[Task],
    options: MeasureOptions,
    execution: Execution,
    budget_s: float,
    workers: Callable[[], object],
) -> Remeasured:
    """Measure the flagged ok results of ``run_id`` among ``tasks`` again, within
    ``budget_s`` (module docstring)."""
    rows = {r["result_key"]: r for r in store.result_rows(run_id)}
    flagged = [
        t for t in tasks
        if t.key in rows and rows[t.key]["status"] == "ok" and rows[t.key].get("disturbed")
    ]  # fmt: skip
    done = Remeasured(flagged=len(flagged))
    chosen = budgeted(flagged, options, budget_s)
    if not chosen:
        return done
    reasons = {t.key: rows[t.key].get("reason") for t in chosen}
    recorder = Replacing(store, run_id, suite_name, reasons)
    result = sweep(chosen, recorder, options, execution, workers=workers)
    done.tried, done.clean, done.interrupted = len(chosen), recorder.clean, result.interrupted
    return done
