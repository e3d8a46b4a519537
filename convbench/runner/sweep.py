"""The sweep: every task measured in an isolated worker process (`convbench.runner.worker`), each
result stored at once.

The backends of one case (same dtype, device and direction) are sent to the worker together
and measured in interleaved rounds (`convbench.measure.task.measure_tasks`); with
``MeasureOptions.interleave`` off, one task at a time. A group has ``timeout_s`` per task.

A task past ``timeout_s`` gets its worker killed and a ``timeout`` row, and a fresh worker
takes the next task; a worker that dies gives an ``error`` row naming its exit code. A group
that times out or dies is measured again task by task, so only the culprit gets that row.

Several devices are measured at once, one worker each, but a CPU task is never timed while
anything else of the run computes (`convbench.runner.isolation`); each row's ``beside`` says
what did run beside it.

Every result is committed to the store as soon as it arrives, so Ctrl-C (which stops cleanly)
or ``kill -9`` (which loses only the case in flight) leave a run that ``--resume`` completes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from convbench.measure.options import MeasureOptions
from convbench.measure.task import base_row
from convbench.problem.suite import Task
from convbench.runner.isolation import Isolation
from convbench.runner.worker import Worker, WorkerDied
from convbench.store import STATUSES, Store


@dataclass
class SweepResult:
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    skipped_done: int = 0


def default_timeout_s(options: MeasureOptions) -> float:
    """Generous per-task limit: warmup + sampling cap, prepare timing, the float64 reference
    and probes, with a floor for slow first calls (imports, allocator warm-up)."""
    t = options.timing
    return 120.0 + 4 * (t.warmup_s + t.max_time_s + options.prepare_timing.max_time_s)


class _Recorder:
    """Writes each finished task to the store at once and keeps the counts (thread-safe)."""

    def __init__(self, store, run_id, suite_name, result, on_result):
        self.store, self.run_id, self.suite_name = store, run_id, suite_name
        self.result, self.on_result = result, on_result
        self.lock = threading.Lock()

    def failed(self, task: Task, options: MeasureOptions, status: str, reason: str) -> dict:
        row = base_row(task)
        row.update(status=status, mode=options.timing.mode, reason=reason)
        return row

    def record(self, index: int, task: Task, row: dict, samples, started: float) -> None:
        row.setdefault("started_at", started)
        row.setdefault("finished_at", time.time())
        row["run_id"] = self.run_id
        row["suite"] = self.suite_name
        with self.lock:
            self.store.add_result(row, samples)
            counts = self.result.counts
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            if self.on_result:
                self.on_result(index, task, row)


def group_key(task: Task) -> tuple:
    """Tasks measured together in interleaved rounds: the backends of one case, dtype, device
    and direction."""
    return (task.case.case_id, task.dtype, task.device, task.direction)


def task_groups(items, interleave: bool) -> list[list]:
    """Consecutive (index, task) items with the same `group_key` (a suite lists the backends
    of a case side by side); each item alone when ``interleave`` is off."""
    groups: list[list] = []
    for item in items:
        if interleave and groups and group_key(groups[-1][-1][1]) == group_key(item[1]):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _measure_group(group, worker, options, timeout_s, recorder, stop, isolation):
    """Measure a group on the worker; yields (index, task, row, samples, started). A group
    that times out or kills the worker is measured again task by task, so that only the
    culprit gets the ``timeout`` or ``error`` row; the others say so in their reason."""
    tasks = [task for _, task in group]
    started = time.time()
    found = failure = None
    with isolation.hold(tasks[0].device) as hold:
        try:
            found = worker.call(("tasks", tasks, options, None), timeout_s * len(tasks))
        except TimeoutError:
            failure = f"no result within {format_seconds(timeout_s * len(tasks))}; worker killed"
            status = "timeout"
        except WorkerDied as exc:
            failure, status = str(exc), "error"
        except Exception:
            if stop.is_set():  # the worker was killed under us by Ctrl-C
                return
            raise
    if stop.is_set() and (failure is not None or worker.proc is None):
        return  # killed by Ctrl-C, not by the task: leave it for --resume
    if failure is not None and len(group) == 1:
        found = [(recorder.failed(tasks[0], options, status, failure), None)]
    elif failure is not None:  # find the culprit: each task alone
        note = f"measured alone: its group of {len(group)} failed ({failure})"
        for item in group:
            if stop.is_set():
                return
            for index, task, row, samples, at in _measure_group(
                [item], worker, options, timeout_s, recorder, stop, isolation
            ):
                if row.get("status") == "ok":
                    row["reason"] = note
                yield index, task, row, samples, at
        return
    for (index, task), (row, samples) in zip(group, found, strict=True):
        if row.get("status") == "ok":
            row["beside"] = hold.beside_text
        yield index, task, row, samples, started


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.3g} s"


def _run_on_worker(items, worker, options, timeout_s, recorder, on_start, stop, isolation):
    """Measure ``items`` (index, task) on one worker (one device), group by group."""
    for group in task_groups(items, options.interleave):
        if stop.is_set():
            return
        if on_start:
            for index, task in group:
                on_start(index, task)
        for index, task, row, samples, started in _measure_group(
            group, worker, options, timeout_s, recorder, stop, isolation
        ):
            recorder.record(index, task, row, samples, started)


def sweep(
    tasks: Sequence[Task],
    store: Store,
    run_id: str,
    options: MeasureOptions,
    *,
    suite_name: str,
    worker: Worker | None = None,
    threads: int | None = None,
    timeout_s: float | None = None,
    on_start: Callable[[int, Task], None] | None = None,
    on_result: Callable[[int, Task, dict], None] | None = None,
    executor: str = "local",
    address: str | None = None,
    cpus_per_task: int | None = None,
    pack: bool = False,
) -> SweepResult:
    """Measure the tasks not yet stored for ``run_id``; each result is committed at once.

    ``executor="local"``: one worker process per device, the devices measured in parallel
    (never two measurements on one device at once); ``worker`` (optional) serves the first
    device. ``executor="ray"``: tasks go to a Ray cluster (`convbench.ray_executor`).
    Ctrl-C (KeyboardInterrupt) stops after killing the workers; finished results are kept and
    the returned result says ``interrupted``.
    """
    timeout_s = timeout_s or default_timeout_s(options)
    done = store.finished_keys(run_id)
    result = SweepResult(run_id, {s: 0 for s in STATUSES})
    pending = [(i, t) for i, t in enumerate(tasks) if t.key not in done]
    result.skipped_done = len(tasks) - len(pending)
    recorder = _Recorder(store, run_id, suite_name, result, on_result)
    if executor == "ray":
        from convbench.runner.ray_executor import run_on_ray

        try:
            run_on_ray(
                pending,
                options,
                timeout_s,
                recorder,
                on_start=on_start,
                address=address,
                cpus_per_task=cpus_per_task or threads,
                pack=pack,
            )
        except KeyboardInterrupt:
            result.interrupted = True
        return result
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}")

    by_device: dict[str, list] = {}
    for index, task in pending:
        by_device.setdefault(task.device, []).append((index, task))
    workers: dict[str, Worker] = {}
    for n, device in enumerate(by_device):
        workers[device] = worker if (n == 0 and worker is not None) else Worker(threads)
    stop = threading.Event()
    isolation = Isolation()
    try:
        for w in workers.values():
            w.ensure()  # start them here, in the main thread (see Worker.start)
        if len(by_device) <= 1:
            for device, items in by_device.items():
                _run_on_worker(
                    items, workers[device], options, timeout_s, recorder, on_start, stop, isolation
                )
        else:
            pool = [
                threading.Thread(
                    target=_run_on_worker,
                    args=(
                        items,
                        workers[device],
                        options,
                        timeout_s,
                        recorder,
                        on_start,
                        stop,
                        isolation,
                    ),
                    name=f"convbench-{device}",
                    daemon=True,
                )
                for device, items in by_device.items()
            ]
            for thread in pool:
                thread.start()
            for thread in pool:
                while thread.is_alive():
                    thread.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        for w in workers.values():
            w.kill()
        result.interrupted = True
    finally:
        for w in workers.values():
            if w is not worker:
                w.stop()
    return result
