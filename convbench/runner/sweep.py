"""The sweep: every task measured in an isolated worker process (`convbench.runner.worker`), each
result stored at once.

A task past ``timeout_s`` gets its worker killed and a ``timeout`` row, and a fresh worker
takes the next task; a worker that dies gives an ``error`` row naming its exit code.

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


def _run_on_worker(items, worker, options, timeout_s, recorder, on_start, stop) -> None:
    """Measure ``items`` (index, task) one at a time on one worker (one device)."""
    for index, task in items:
        if stop.is_set():
            return
        if on_start:
            on_start(index, task)
        started = time.time()
        try:
            row, samples = worker.call(("task", task, options), timeout_s)
        except TimeoutError:
            row, samples = (
                recorder.failed(
                    task, options, "timeout", f"no result within {timeout_s:.0f} s; worker killed"
                ),
                None,
            )
        except WorkerDied as exc:
            row, samples = recorder.failed(task, options, "error", str(exc)), None
        except Exception:
            if stop.is_set():  # the worker was killed under us by Ctrl-C
                return
            raise
        if stop.is_set() and row["status"] in ("timeout", "error") and worker.proc is None:
            return  # killed by Ctrl-C, not by the task: leave it for --resume
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
    try:
        for w in workers.values():
            w.ensure()  # start them here, in the main thread (see Worker.start)
        if len(by_device) <= 1:
            for device, items in by_device.items():
                _run_on_worker(items, workers[device], options, timeout_s, recorder, on_start, stop)
        else:
            pool = [
                threading.Thread(
                    target=_run_on_worker,
                    args=(items, workers[device], options, timeout_s, recorder, on_start, stop),
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
