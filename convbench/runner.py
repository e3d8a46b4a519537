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
        self.proc.start()
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
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(("stop",))
                self.proc.join(5)
            except (BrokenPipeError, OSError):
                pass
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


def sweep(
    tasks: Sequence[Task],
    store: Store,
    run_id: str,
    options: MeasureOptions,
    *,
    suite_name: str,
    worker: Worker,
    timeout_s: float | None = None,
    on_start: Callable[[int, Task], None] | None = None,
    on_result: Callable[[int, Task, dict], None] | None = None,
) -> SweepResult:
    """Measure the tasks not yet stored for ``run_id``; each result is committed at once.

    Ctrl-C (KeyboardInterrupt) stops after killing the worker; finished results are kept and
    the returned result says ``interrupted``.
    """
    timeout_s = timeout_s or default_timeout_s(options)
    done = store.finished_keys(run_id)
    result = SweepResult(run_id, {s: 0 for s in STATUSES})
    try:
        for index, task in enumerate(tasks):
            if task.key in done:
                result.skipped_done += 1
                continue
            if on_start:
                on_start(index, task)
            started = time.time()
            try:
                row, samples = worker.call(("task", task, options), timeout_s)
            except TimeoutError:
                row, samples = base_row(task), None
                row.update(
                    status="timeout",
                    mode=options.timing.mode,
                    reason=f"no result within {timeout_s:.0f} s; worker killed",
                )
            except WorkerDied as exc:
                row, samples = base_row(task), None
                row.update(status="error", mode=options.timing.mode, reason=str(exc))
            row.setdefault("started_at", started)
            row.setdefault("finished_at", time.time())
            row["run_id"] = run_id
            row["suite"] = suite_name
            store.add_result(row, samples)
            done.add(task.key)
            result.counts[row["status"]] = result.counts.get(row["status"], 0) + 1
            if on_result:
                on_result(index, task, row)
    except KeyboardInterrupt:
        worker.kill()
        result.interrupted = True
    return result
