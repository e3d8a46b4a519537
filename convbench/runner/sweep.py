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

The sweep is handed its collaborators: a `Recorder` (where results go) and a worker factory
(what measures them), so that ordering, resume, retry-alone and interruption are tested with
fakes (tests/runner/test_sweep.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from convbench.measure.groups import alone_note, each_alone, task_groups
from convbench.measure.options import MeasureOptions
from convbench.problem.suite import Task
from convbench.runner.isolation import Isolation
from convbench.runner.recorder import Recorder, SweepResult
from convbench.runner.worker import Worker, WorkerDied

__all__ = ["Execution", "Recorder", "SweepResult", "default_timeout_s", "sweep"]


@dataclass(frozen=True)
class Execution:
    """Where and how the tasks run: ``kind`` local (one worker process per device) or ray;
    the threads of a CPU task; the time limit per task (None: `default_timeout_s`); for Ray
    the cluster's address, CPUs per task and whether CPU tasks share a node (``pack``)."""

    kind: str = "local"
    threads: int | None = None
    timeout_s: float | None = None
    address: str | None = None
    cpus_per_task: int | None = None
    pack: bool = False


def default_timeout_s(options: MeasureOptions) -> float:
    """Generous per-task limit: warmup + sampling cap, prepare timing, the float64 reference
    and probes, with a floor for slow first calls (imports, allocator warm-up)."""
    t = options.timing
    return 120.0 + 4 * (t.warmup_s + t.max_time_s + options.prepare_timing.max_time_s)


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.3g} s"


@dataclass
class _Device:
    """One device's share of a sweep: its worker and what the group loop needs."""

    worker: object
    options: MeasureOptions
    timeout_s: float
    recorder: Recorder
    stop: threading.Event
    isolation: Isolation

    def measure(self, group, note: str | None = None) -> None:
        """Measure a group on the worker and record its rows. A group that times out or
        kills the worker is measured again task by task (`each_alone`), so that only the
        culprit gets the ``timeout`` or ``error`` row."""
        tasks = [task for _, task in group]
        limit = self.timeout_s * len(tasks)
        failure = found = None
        with self.isolation.hold(tasks[0].device) as hold:
            try:
                found = self.worker.call(("tasks", tasks, self.options), limit)
            except TimeoutError:
                failure = f"no result within {format_seconds(limit)}; worker killed"
                status = "timeout"
            except WorkerDied as exc:
                failure, status = str(exc), "error"
            except Exception:
                if self.stop.is_set():  # the worker was killed under us by Ctrl-C
                    return
                raise
        if self.stop.is_set() and (failure is not None or self.worker.proc is None):
            return  # killed by Ctrl-C, not by the task: leave it for --resume
        if failure is None:
            for (index, task), (row, samples) in zip(group, found, strict=True):
                self.recorder.record(index, task, row, samples, beside=hold.beside_text, note=note)
        elif len(group) == 1:
            (index, task), mode = group[0], self.options.timing.mode
            self.recorder.record(index, task, self.recorder.failed(task, mode, status, failure))
        else:
            each_alone(group, partial(self._alone, note=alone_note(len(group), failure)))

    def _alone(self, member, note: str) -> None:
        if not self.stop.is_set():
            self.measure(member, note)

    def run(self, items, on_start) -> None:
        """Measure ``items`` (index, task) of this device, group by group."""
        for group in task_groups(items, self.options.interleave):
            if self.stop.is_set():
                return
            if on_start:
                for index, task in group:
                    on_start(index, task)
            self.measure(group)


def sweep(
    tasks: Sequence[Task],
    recorder: Recorder,
    options: MeasureOptions,
    execution: Execution = Execution(),
    *,
    workers: Callable[[], object] | None = None,
    on_start: Callable[[int, Task], None] | None = None,
) -> SweepResult:
    """Measure the tasks the recorder's store has not finished for its run; each result is
    committed at once.

    ``execution.kind`` local: one worker per device from ``workers`` (default: a new
    `Worker` with ``execution.threads``), the devices measured in parallel (never two
    measurements on one device at once). ray: tasks go to a Ray cluster
    (`convbench.runner.ray_executor`). Ctrl-C (KeyboardInterrupt) stops after killing the
    workers; finished results are kept and the returned result says ``interrupted``.
    """
    result = recorder.result
    done = recorder.done_keys()
    pending = [(i, t) for i, t in enumerate(tasks) if t.key not in done]
    result.skipped_done = len(tasks) - len(pending)
    timeout_s = execution.timeout_s or default_timeout_s(options)
    if execution.kind == "ray":
        from convbench.runner.ray_executor import run_on_ray

        try:
            run_on_ray(pending, options, execution, timeout_s, recorder, on_start=on_start)
        except KeyboardInterrupt:
            result.interrupted = True
        return result
    if execution.kind != "local":
        raise ValueError(f"unknown executor {execution.kind!r}")
    make = workers or partial(Worker, execution.threads)
    by_device: dict[str, list] = {}
    for index, task in pending:
        by_device.setdefault(task.device, []).append((index, task))
    stop, isolation = threading.Event(), Isolation()
    devices = {
        name: _Device(make(), options, timeout_s, recorder, stop, isolation) for name in by_device
    }
    try:
        for device in devices.values():
            device.worker.ensure()  # start them here, in the main thread (see Worker.start)
        _run_devices(devices, by_device, on_start)
    except KeyboardInterrupt:
        stop.set()
        for device in devices.values():
            device.worker.kill()
        result.interrupted = True
    finally:
        for device in devices.values():
            device.worker.stop()
    return result


def _run_devices(devices: dict[str, _Device], by_device: dict[str, list], on_start) -> None:
    """One device in this thread; several at once, one thread each."""
    if len(devices) <= 1:
        for name, items in by_device.items():
            devices[name].run(items, on_start)
        return
    pool = [
        threading.Thread(
            target=devices[name].run,
            args=(items, on_start),
            name=f"convbench-{name}",
            daemon=True,
        )
        for name, items in by_device.items()
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        while thread.is_alive():
            thread.join(0.2)
