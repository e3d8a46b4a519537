"""The sweep: run every task in an isolated worker process and store each result at once.

Why a worker process: a case that hangs, loops forever, crashes the interpreter or leaks
memory must not stall or kill the sweep. The parent sends one task at a time over a pipe and
waits at most ``timeout_s``; past that it kills the worker, records ``timeout``, and starts a
fresh worker for the next task. A worker that dies (segfault, OOM killer) gives an ``error``
row naming its exit code. The worker is started once and reused, so torch is imported once.

Every result is committed to the store as soon as it arrives, so Ctrl-C (which stops cleanly)
or ``kill -9`` (which loses only the case in flight) leave a run that ``--resume`` completes.
The worker ignores SIGINT (the parent decides) and exits if its parent disappears.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from convbench.measure import MeasureOptions, base_row
from convbench.store import Store
from convbench.suite import Task

STATUSES = ("ok", "unsupported", "oom", "error", "timeout")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


# -- the worker process ------------------------------------------------------------------
def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(0.5)


def _worker_main(conn, threads: int | None, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    import torch

    if threads:
        torch.set_num_threads(threads)
    from convbench import envinfo
    from convbench.measure import measure_task

    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        kind = message[0]
        if kind == "stop":
            return
        if kind == "env":
            conn.send(envinfo.collect_env())
        elif kind == "task":
            _, task, options = message
            conn.send(measure_task(task, options))
        elif kind == "peak":  # ("peak", device, dtype) -> GFLOP/s, or None and why not
            conn.send(_peak(*message[1:]))


def _peak(device: str, dtype: str) -> tuple[float | None, str | None]:
    from convbench.peak import measure_peak_gflops

    try:
        return measure_peak_gflops(device, dtype), None
    except Exception as exc:  # a device or dtype without a matmul: the run goes on
        return None, f"{type(exc).__name__}: {exc}"


class Worker:
    """A measurement process the parent can time out and replace."""

    startup_timeout_s = 300.0

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker_main, args=(child, self.threads, os.getpid()), daemon=True
        )
        # Born with SIGINT ignored (then Python installs no KeyboardInterrupt handler), so a
        # Ctrl-C during the worker's imports cannot print a traceback: the parent decides.
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            self.proc.start()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        child.close()
        self.conn = parent
        # Start-up (importing torch) is not part of any task's time limit.
        if not parent.poll(self.startup_timeout_s):
            self.kill()
            raise RuntimeError(f"worker did not start within {self.startup_timeout_s:.0f} s")
        hello = parent.recv()
        assert hello[0] == "ready", hello

    def ensure(self) -> None:
        if self.proc is None or not self.proc.is_alive():
            self.start()

    def call(self, message: tuple, timeout_s: float):
        """Send a message, wait for the answer. Raises TimeoutError or WorkerDied."""
        self.ensure()
        self.conn.send(message)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.conn.poll(0.05):
                try:
                    return self.conn.recv()
                except EOFError:
                    break
            if not self.proc.is_alive():
                break
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError
        self.proc.join(5)  # the pipe closes a moment before the exit status is known
        code = self.proc.exitcode
        self.kill()
        raise WorkerDied(code)

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.proc = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stop(self) -> None:
        """Ask the worker to exit, then make sure it has (a second Ctrl-C just kills it)."""
        try:
            if self.proc is not None and self.proc.is_alive():
                self.conn.send(("stop",))
                self.proc.join(5)
        except (BrokenPipeError, OSError, KeyboardInterrupt):
            pass
        finally:
            self.kill()


class WorkerDied(Exception):
    def __init__(self, exitcode):
        super().__init__(f"worker process died (exit code {exitcode})")
        self.exitcode = exitcode


# -- the sweep ---------------------------------------------------------------------------
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
        from convbench.ray_executor import run_on_ray

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
