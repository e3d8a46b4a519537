"""Re-measuring a run's flagged results at its end, once the host may have calmed down.

A result the timing flagged (too many disturbed samples, an unsteady median, the host off its
usual pace: `convbench.measure.flags`) says what the machine did then, and a regression gate
judging it alone cannot pass it (`convbench.analysis.gate`). After the sweep, `remeasure`
measures the cases that have such results once more, in suite order, within a time budget
(``--remeasure-time``, and a quarter of the sweep's own time: `convbench.runner.session`; 0
turns it off). A case is measured again whole, all its backends in interleaved rounds as the
sweep measured them, so that its results still share their rounds: the gate compares a
result with its case's vendor backend round by round. The new measurement of a case
replaces the stored one (rows and samples, in one transaction per result) when every result
of it is ``ok`` and fewer are flagged than before, each with a note in its reason;
otherwise the first measurement stays. ``--resume`` of a finished run does the same for its
flagged results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from convbench.measure.groups import group_key
from convbench.measure.options import MeasureOptions
from convbench.problem.suite import Task
from convbench.runner.recorder import Recorder
from convbench.runner.sweep import Execution, sweep
from convbench.store.record import Result

#: What `remeasure` budgets per task beyond the sampling cap: warm-up, planning, checking.
OVERHEAD_S = 0.25


@dataclass
class Remeasured:
    """What the pass did: results flagged, those re-measured (within the budget) with the
    ``beside`` other results of their cases, and how many of them are now clean."""

    flagged: int = 0
    tried: int = 0
    clean: int = 0
    beside: int = 0
    interrupted: bool = False

    def line(self) -> str:
        if not self.flagged:
            return ""
        left = self.flagged - self.tried
        text = f"re-measured {self.tried} of {self.flagged} flagged result(s)"
        if self.beside:
            text += f" with the {self.beside} other result(s) of their cases"
        text += f": {self.clean} clean"
        if left:
            text += f"; {left} not re-measured within the budget (--remeasure-time)"
        return text


class Replacing(Recorder):
    """Holds each re-measured case until the pass ends (`commit`), then stores it in place
    of the first measurement where every result of it is ok and fewer are flagged."""

    def __init__(self, store, run_id: str, suite_name: str, reasons: dict[str, str | None]):
        super().__init__(store, run_id, suite_name)
        self.reasons = reasons  # task key -> its first reason (None: it was not flagged)
        self.held: dict[tuple, list] = {}
        self.clean = 0

    def done_keys(self) -> set[str]:
        return set()  # every task handed over is measured again

    replace = True

    def record(self, index, task, row, samples=None, *, beside=None, note=None) -> None:
        row = row if isinstance(row, Result) else Result(row)
        self.held.setdefault(group_key(task), []).append((index, task, row, samples, beside))

    def commit(self) -> None:
        """Store the cases that came back better (class docstring)."""
        for results in self.held.values():
            before = sum(self.reasons.get(t.key) is not None for _, t, *_ in results)
            rows = [row for _, _, row, *_ in results]
            if any(r.get("status") != "ok" for r in rows):
                continue
            if sum(bool(r.get("disturbed")) for r in rows) >= before:
                continue
            for index, task, row, samples, beside in results:
                first = self.reasons.get(task.key)
                note = "re-measured at the end of the run with its case; " + (
                    f"the first measurement was flagged ({first})"
                    if first is not None
                    else "its first measurement was not flagged"
                )
                if row.get("disturbed"):
                    note = f"{row.get('reason')}; {note}"
                super().record(index, task, row, samples, beside=beside, note=note)
                self.clean += first is not None and not row.get("disturbed")


def task_s(options: MeasureOptions) -> float:
    """The seconds `remeasure` budgets per task: its warm-up and sampling cap, plus
    `OVERHEAD_S`."""
    return options.timing.warmup_s + options.timing.max_time_s + OVERHEAD_S


def budgeted(groups: Sequence[list[Task]], options: MeasureOptions, budget_s: float) -> list:
    """The first of ``groups`` whose tasks' budgets (`task_s`) fit ``budget_s`` together."""
    per_task = task_s(options)
    chosen, spent = [], 0.0
    for group in groups:
        spent += per_task * len(group)
        if spent > budget_s:
            break
        chosen.append(group)
    return chosen


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
    """Measure the cases of ``run_id`` among ``tasks`` that have flagged ok results again,
    within ``budget_s`` (module docstring)."""
    rows = {r["result_key"]: r for r in store.result_rows(run_id)}
    ok = [t for t in tasks if t.key in rows and rows[t.key]["status"] == "ok"]
    flagged = {t.key for t in ok if rows[t.key].get("disturbed")}
    cases: dict[tuple, list[Task]] = {}
    for task in ok:
        cases.setdefault(group_key(task), []).append(task)
    groups = [g for g in cases.values() if any(t.key in flagged for t in g)]
    done = Remeasured(flagged=len(flagged))
    chosen = budgeted(groups, options, budget_s)
    if not chosen:
        return done
    again = [t for group in chosen for t in group]
    reasons = {
        t.key: (rows[t.key].get("reason") or "flagged") if t.key in flagged else None for t in again
    }
    recorder = Replacing(store, run_id, suite_name, reasons)
    result = sweep(again, recorder, options, execution, workers=workers)
    if not result.interrupted:
        recorder.commit()
    done.tried = sum(t.key in flagged for t in again)
    done.beside = len(again) - done.tried
    done.clean, done.interrupted = recorder.clean, result.interrupted
    return done
