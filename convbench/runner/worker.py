"""The measurement process: one per device, started once, replaced when a task kills it.

Why a worker process: a case that hangs, loops forever, crashes the interpreter or leaks
memory must not stall or kill the sweep. The parent sends one message at a time over a pipe
and waits at most a time limit; past that it kills the worker and starts a fresh one for the
next task. A worker that dies (segfault, OOM killer) is reported with its exit code. The
worker is started once and reused, so torch is imported once. It ignores SIGINT (the parent
decides) and exits if its parent disappears.

Ctrl-C during start-up: the parent *blocks* SIGINT (``pthread_sigmask``) while it spawns the
worker, so the child is born with SIGINT blocked (the mask survives fork and exec) and cannot
be interrupted in its imports; it ignores SIGINT before unblocking it. A Ctrl-C that reaches
the parent in that window stays pending and is delivered when the parent unblocks it: it is
never lost. (Ignoring SIGINT in the parent instead, as an earlier version did, dropped a
Ctrl-C that arrived while the child was being spawned, and the sweep ran to the end.) The
resource tracker multiprocessing starts on first use unblocks SIGINT when it has started, so
it is started before the block. A Ctrl-C already caught by Python just before the block is
held back until the child has its start-up data (`_defer_sigint`).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import resource_tracker


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(0.5)


def _worker_main(conn, threads: int | None, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a pending Ctrl-C is discarded here
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    from convbench.measure.malloc import steady_state

    malloc = steady_state()  # before anything is allocated: the same for every backend
    import torch

    if threads:
        torch.set_num_threads(threads)
    handlers = _handlers(threads, malloc)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        kind, args = message[0], message[1:]
        if kind == "stop":
            return
        handler = handlers.get(kind)
        conn.send(handler(*args) if handler else UnknownMessage(kind, sorted(handlers)))


def _handlers(threads: int | None, malloc: str) -> dict[str, Callable]:
    """What the worker answers, by message kind: ``(kind, *args)`` -> ``handler(*args)``."""
    from convbench.measure import envinfo
    from convbench.measure.task import measure_tasks

    def torch_timer(tasks, options, max_run_time_s):
        from convbench.measure.torch_timer import adaptive_autorange_ms

        return adaptive_autorange_ms(tasks, options, max_run_time_s, threads=threads)

    return {
        "env": lambda: envinfo.collect_env() | {"malloc": malloc},
        "tasks": measure_tasks,  # (tasks, options, beside): interleaved rounds
        "torch_timer": torch_timer,  # (tasks, options, max_run_time_s)
        "peak": functools.partial(_ceiling, "measure_peak_gflops"),  # (device, dtype)
        "bandwidth": functools.partial(_ceiling, "measure_bandwidth_gbs"),  # (device,)
    }


@dataclass(frozen=True)
class UnknownMessage:
    """The worker's answer to a message of a kind it has no handler for."""

    kind: str
    known: list[str]

    def error(self) -> ValueError:
        return ValueError(
            f"worker: unknown message kind {self.kind!r} (known: {', '.join(self.known)}, stop)"
        )


def _ceiling(name: str, *args) -> tuple[float | None, str | None]:
    """A roofline ceiling (`convbench.measure.peak`: ``name``), or None and why not."""
    from convbench.measure import peak

    try:
        return getattr(peak, name)(*args), None
    except Exception as exc:  # a device or dtype without a matmul: the run goes on
        return None, f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _sigint_blocked():
    """Block SIGINT in this thread (and so in processes it starts) for the block's duration;
    a SIGINT arriving meanwhile is delivered when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _defer_sigint:
    """Hold back the *Python-level* SIGINT handler for the block's duration (main thread).

    Blocking the signal (`_sigint_blocked`) does not help with a Ctrl-C whose C-level handler
    already ran just before the block: CPython raises its KeyboardInterrupt at the next
    bytecode boundary, which may be inside ``Process.start`` after the child was spawned and
    before its start-up data was written to it — the parent then closes the pipe and the
    child prints an ``EOFError`` traceback. Here such a Ctrl-C is recorded (``caught``) and the
    caller raises it once the child has been started. `signal.signal` runs the old handler for
    a signal pending when it is called, so an earlier Ctrl-C still interrupts before any
    child exists. In other threads (signals are handled by the main thread) this does
    nothing."""

    def __init__(self):
        self.caught = False
        self._previous = None

    def _record(self, signum, frame) -> None:
        self.caught = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._record)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Worker:
    """A measurement process the parent can time out and replace."""

    startup_timeout_s = 300.0

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None
        self.ready = False

    def launch(self) -> None:
        """Spawn the process and return at once: its start-up (importing torch) runs while
        the parent goes on with its own work; the first `call` waits for it (`ensure`).
        Nothing happens when a process is already there."""
        if self.proc is not None:
            return
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker_main, args=(child, self.threads, os.getpid()), daemon=True
        )
        # Born with SIGINT blocked, so a Ctrl-C during the worker's imports cannot print a
        # traceback there; in the parent it stays pending, never lost (see the module doc).
        self.conn, self.ready = parent, False
        # Spawning starts multiprocessing's resource tracker the first time, and that start
        # *unblocks* SIGINT when it is done: let it happen before the block, not inside it.
        resource_tracker.ensure_running()
        deferred = _defer_sigint()
        try:
            with deferred, _sigint_blocked():
                self.proc.start()
        finally:
            child.close()
        if deferred.caught:  # now that the child has everything it needs to start
            raise KeyboardInterrupt

    def _wait_ready(self) -> None:
        # Start-up (importing torch) is not part of any task's time limit.
        if not self.conn.poll(self.startup_timeout_s):
            self.kill()
            raise RuntimeError(f"worker did not start within {self.startup_timeout_s:.0f} s")
        hello = self.conn.recv()
        assert hello[0] == "ready", hello
        self.ready = True

    def start(self) -> None:
        self.launch()
        self._wait_ready()

    def ensure(self) -> None:
        """A started process to talk to: the launched one once it is ready, or a new one
        where there is none or it died."""
        if self.proc is not None and not self.ready:
            self._wait_ready()
        if self.proc is None or not self.proc.is_alive():
            self.kill()
            self.start()

    def call(self, message: tuple, timeout_s: float):
        """Send a message, wait for the answer. Raises TimeoutError or WorkerDied, or
        ValueError for a message of a kind the worker does not know."""
        self.ensure()
        self.conn.send(message)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.conn.poll(0.05):
                try:
                    answer = self.conn.recv()
                except EOFError:
                    break
                if isinstance(answer, UnknownMessage):
                    raise answer.error()
                return answer
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


class Prelaunched:
    """A worker factory (`convbench.runner.session.execute`'s ``workers``) whose first
    worker is launched when it is made, so that the worker's start-up (spawning, importing
    torch: about two seconds) runs while the caller does its own work before the sweep:
    importing the rest of convbench, loading a suite, tracing a model. Later calls make new
    workers. Used as a context manager: a first worker never handed out (the caller failed
    before its run) is killed on exit; one handed out is stopped by whoever took it."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._first = Worker(threads)
        try:
            self._first.launch()
        except BaseException:  # a Ctrl-C held back until the child was spawned
            self._first.kill()
            raise

    def __call__(self) -> Worker:
        first, self._first = self._first, None
        return first if first is not None else Worker(self.threads)

    def __enter__(self) -> Prelaunched:
        return self

    def __exit__(self, *exc) -> None:
        if self._first is not None:
            self._first.kill()
            self._first = None


class WorkerDied(Exception):
    def __init__(self, exitcode):
        super().__init__(f"worker process died (exit code {exitcode})")
        self.exitcode = exitcode
