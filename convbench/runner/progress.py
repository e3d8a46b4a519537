"""The sweep's progress bar (rich, on stderr): the current case and an ETA. Used by
`convbench run` and by `convbench.run(progress=True)` alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from convbench.problem.suite import Task


class SweepProgress:
    """``on_start``/``on_result`` callbacks for `convbench.runner.sweep.sweep` that drive a bar."""

    def __init__(self, progress: Progress, total: int, done: int):
        self._progress = progress
        self._bar = progress.add_task("starting", total=total)
        progress.advance(self._bar, done)

    def on_start(self, index: int, task: Task) -> None:
        self._progress.update(
            self._bar,
            description=f"{task.case.name} · {task.backend} · {task.dtype} · "
            f"{task.device} · {task.direction}",
        )

    def on_result(self, index: int, task: Task, row: dict) -> None:
        self._progress.advance(self._bar)

    def finish(self, interrupted: bool) -> None:
        self._progress.update(self._bar, description="interrupted" if interrupted else "done")


@contextmanager
def sweep_progress(console: Console, total: int, done: int = 0) -> Iterator[SweepProgress]:
    """A live bar of ``total`` tasks, ``done`` of them already stored (a resumed run)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield SweepProgress(progress, total, done)
