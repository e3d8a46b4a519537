"""CPU utilisation of this process during a timed window, through psutil.

``cpu_util_pct`` is process CPU time (user + system, all threads) over wall time, ×100: 250 means
two and a half cores busy on average, so it exceeds 100 with intra-op threads.
``cpu_util_norm_pct`` divides by the logical cores this process may run on (100 = all busy).
The kernel accounts CPU time in scheduler ticks (often 10 ms), so windows shorter than a few
ticks read coarsely. ``threads`` is the most OS threads the process had at any sample (the
sampler's own thread excluded); the OpenMP pool, once started, persists and is always seen.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class CpuUsage:
    """What the process did on the CPU over one window; ``note`` says why a field is None."""

    cpu_util_pct: float | None
    cpu_util_norm_pct: float | None
    threads: int | None
    torch_threads: int
    cpu_time_s: float | None = None
    wall_s: float | None = None
    n_cores: int | None = None
    note: str | None = None


def cpu_usage(
    cpu_time_s: float,
    wall_s: float,
    threads_seen: list[int],
    torch_threads: int,
    n_cores: int | None,
) -> CpuUsage:
    """Reduce the window's CPU time, wall time and thread counts to a `CpuUsage` (pure)."""
    if wall_s <= 0:
        util = None
        note = "empty window (no wall time elapsed)"
    else:
        util = 100.0 * cpu_time_s / wall_s
        note = None
    norm = util / n_cores if util is not None and n_cores else None
    return CpuUsage(
        cpu_util_pct=util,
        cpu_util_norm_pct=norm,
        threads=max(threads_seen) if threads_seen else None,
        torch_threads=torch_threads,
        cpu_time_s=cpu_time_s,
        wall_s=wall_s,
        n_cores=n_cores,
        note=note,
    )


def usable_cores() -> int | None:
    """Logical cores this process may run on (its affinity mask), else all logical cores."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


class CpuSampler:
    """Context manager measuring this process's CPU utilisation and thread count.

    ::

        with CpuSampler() as sampler:
            run_timed_block()
        sampler.usage.cpu_util_pct

    CPU time is read at entry and exit. The thread count is read at entry, every
    ``interval_s`` from a background thread (``None``: no thread, entry and exit only), and at
    exit. Never raises: without psutil the fields are None and ``note`` says why.
    ``process`` injects a psutil.Process-like object and ``clock`` the wall clock (tests).
    """

    def __init__(
        self,
        interval_s: float | None = 0.1,
        *,
        process: Any | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.interval_s = interval_s
        self.usage: CpuUsage | None = None
        self._process = process
        self._clock = clock
        self._threads_seen: list[int] = []
        self._note: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._torch_threads = torch.get_num_threads()

    def __enter__(self) -> CpuSampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._torch_threads = torch.get_num_threads()
        if self._process is None:
            try:
                import psutil

                self._process = psutil.Process()
            except ImportError:
                self._note = "psutil is not installed"
                return
        try:
            self._record_threads(own_thread_alive=False)
            self._cpu0 = self._cpu_time()
        except Exception as exc:  # psutil.Error (e.g. AccessDenied) or a broken /proc
            self._note = f"cannot read process CPU times: {type(exc).__name__}: {exc}"
            return
        self._t0 = self._clock()
        if self.interval_s is not None:
            self._thread = threading.Thread(target=self._run, name="convbench-cpu", daemon=True)
            self._thread.start()

    def stop(self) -> CpuUsage:
        """Stop sampling (idempotent) and return the `CpuUsage`, also kept in ``usage``."""
        if self.usage is not None:
            return self.usage
        if self._note is not None:
            self.usage = CpuUsage(None, None, None, self._torch_threads, note=self._note)
            return self.usage
        wall_s = self._clock() - self._t0
        try:
            cpu_time_s = self._cpu_time() - self._cpu0
            # Before joining: a just-joined thread can linger in /proc for a moment.
            self._record_threads(own_thread_alive=self._thread is not None)
        except Exception as exc:
            cpu_time_s = None
            self._note = f"cannot read process CPU times: {type(exc).__name__}: {exc}"
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if cpu_time_s is None:
            self.usage = CpuUsage(None, None, None, self._torch_threads, note=self._note)
        else:
            self.usage = cpu_usage(
                cpu_time_s, wall_s, self._threads_seen, self._torch_threads, usable_cores()
            )
        return self.usage

    def _cpu_time(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def _record_threads(self, own_thread_alive: bool) -> None:
        self._threads_seen.append(self._process.num_threads() - int(own_thread_alive))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._record_threads(own_thread_alive=True)
            except Exception:  # the exit reading still happens; a missed sample is harmless
                return
