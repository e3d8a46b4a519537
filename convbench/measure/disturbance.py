"""Was a sample disturbed? Probes read, around every sample, what says the machine took time
away from the measured work; the timing engine drops those samples from its statistics.

* `SchedstatProbe` (Linux, CPU): ``/proc/self/task/*/schedstat`` holds, per thread, the time
  it ran and the time it was **runnable but waiting for a CPU** (both in ns; the kernel
  brings them up to date when a thread is switched in or out, so a wait is seen once the
  thread got its CPU back — within the sample, when the sample outlasted the wait). Over a sample,
  ``lost = Σ wait / Σ (run + wait)`` over the threads that ran is the share of the CPU time
  the process asked for and did not get: another process held the core. A busy neighbour on
  one of two cores makes it 30–50 %; a quiet machine, well under 1 %. A sample is disturbed
  when ``lost`` exceeds `TimingConfig.max_lost` (default 3 %). Reading is ~1.5 µs a thread
  (``pread`` on descriptors opened once) and happens outside the timed region.
* `CpuTimeProbe` (the fallback where schedstat is not readable): the process's CPU time per
  wall time, compared with what the undisturbed warmup showed; a shortfall beyond the
  threshold is the same signal, coarser (scheduler-tick resolution).
* `FakeProbe`: scripted ``lost`` values, so the engine's handling can be tested exactly.

* `SmClockProbe` (CUDA): the GPU's current SM clock from NVML before and after each sample;
  a sample during which it was below `MIN_CLOCK_SHARE` (75 %) of the default SM clock is
  disturbed — thermal or power throttling, or a GPU still idling down from its boost state —
  as nvbench discards them. ``mean_clock_mhz`` is the mean over the samples kept.

A probe's ``rule`` says, for a result's ``reason``, what made a sample disturbed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

TASK_DIR = Path("/proc/self/task")


class Probe(Protocol):
    """What the engine needs of a disturbance probe."""

    name: str

    def start(self) -> None:
        """Get ready (find the threads to watch); called once, after warmup."""

    def read(self) -> object:
        """A snapshot, taken just before and just after a sample."""

    def lost(self, before: object, after: object, wall_ns: int) -> float:
        """Share (0–1) of the sample's CPU demand the machine did not serve."""

    def cpu_ns(self, before: object, after: object) -> int | None:
        """CPU time the process's threads ran between the two readings (None if unknown)."""

    def close(self) -> None: ...


class SchedstatProbe:
    """Per-thread run and wait times from ``/proc/self/task/*/schedstat`` (see the module)."""

    name = "schedstat"
    rule = "that lost over the threshold of their CPU time to other processes"

    def __init__(self, task_dir: Path = TASK_DIR):
        self.task_dir = task_dir
        self._fds: list[int] = []

    @staticmethod
    def available(task_dir: Path = TASK_DIR) -> bool:
        try:
            tid = next(iter(os.listdir(task_dir)))
            (task_dir / tid / "schedstat").read_text().split()[1]
        except (OSError, StopIteration, IndexError):
            return False
        return True

    def start(self) -> None:
        self.close()
        for tid in os.listdir(self.task_dir):
            try:
                self._fds.append(os.open(self.task_dir / tid / "schedstat", os.O_RDONLY))
            except OSError:
                continue  # a thread that just ended

    def read(self) -> tuple[int, tuple[tuple[int, int], ...]]:
        """(process CPU ns, ((run ns, wait ns) per thread))."""
        values = []
        for fd in self._fds:
            try:
                run, wait = os.pread(fd, 64, 0).split()[:2]
                values.append((int(run), int(wait)))
            except (OSError, ValueError):
                values.append((0, 0))  # the thread ended: it neither ran nor waited since
        return time.process_time_ns(), tuple(values)

    def lost(self, before, after, wall_ns: int) -> float:
        return lost_share(before[1], after[1])

    def cpu_ns(self, before, after) -> int:
        # The process CPU clock, not schedstat's run times: those of a running thread are
        # only brought up to date at scheduler events, while this clock is exact.
        return after[0] - before[0]

    @property
    def threads(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def __del__(self):
        self.close()


def lost_share(before: Sequence[tuple[int, int]], after: Sequence[tuple[int, int]]) -> float:
    """``Σ wait / Σ (run + wait)`` of the threads whose counters moved (pure)."""
    ran = waited = 0
    for (run0, wait0), (run1, wait1) in zip(before, after, strict=True):
        d_run, d_wait = max(run1 - run0, 0), max(wait1 - wait0, 0)
        ran += d_run
        waited += d_wait
    demand = ran + waited
    return waited / demand if demand > 0 else 0.0


class CpuTimeProbe:
    """Process CPU time per wall time (`time.process_time_ns`), against the ratio the first
    samples showed: a sample whose ratio falls short of the best seen by more than the
    threshold lost that share. Used where schedstat cannot be read."""

    name = "cpu_time"
    rule = "that got less of the CPU than the best samples did, beyond the threshold"

    def __init__(self):
        self.best = 0.0

    def start(self) -> None:
        self.best = 0.0

    def read(self) -> int:
        return time.process_time_ns()

    def lost(self, before: int, after: int, wall_ns: int) -> float:
        if wall_ns <= 0:
            return 0.0
        ratio = (after - before) / wall_ns
        self.best = max(self.best, ratio)
        return max(0.0, 1.0 - ratio / self.best) if self.best > 0 else 0.0

    def cpu_ns(self, before: int, after: int) -> int:
        return after - before

    def close(self) -> None:
        pass


class FakeProbe:
    """Scripted ``lost`` values, one per sample (cycled), for tests of the engine."""

    name = "fake"
    rule = "scripted as disturbed"

    def __init__(self, losses: Sequence[float]):
        self.losses = list(losses)
        self.samples = 0

    def start(self) -> None:
        pass

    def read(self) -> int:
        return self.samples

    def lost(self, before, after, wall_ns: int) -> float:
        value = self.losses[self.samples % len(self.losses)]
        self.samples += 1
        return value

    def cpu_ns(self, before, after) -> None:
        return None

    def close(self) -> None:
        pass


#: `SmClockProbe`: samples below this share of the default SM clock are disturbed.
MIN_CLOCK_SHARE = 0.75
NVML_CLOCK_SM = 1


class SmClockProbe:
    """Per-sample SM clock of one GPU through a pynvml-like module (see the module doc).

    The default clock is NVML's default applications clock, or the maximum SM clock where the
    GPU has none. A failed read counts as undisturbed (the sample is kept), and is noted."""

    name = "sm_clock"

    def __init__(self, nvml, handle, default_mhz: float | None = None):
        self.nvml, self.handle = nvml, handle
        self.default_mhz = default_mhz if default_mhz is not None else self._default()
        self.kept_mhz: list[float] = []
        self.note: str | None = None

    def _default(self) -> float | None:
        for query in ("nvmlDeviceGetDefaultApplicationsClock", "nvmlDeviceGetMaxClockInfo"):
            try:
                value = getattr(self.nvml, query)(self.handle, NVML_CLOCK_SM)
            except Exception:
                continue
            if value:
                return float(value)
        return None

    @property
    def rule(self) -> str:
        default = f"{self.default_mhz:.0f} MHz" if self.default_mhz else "unknown"
        return f"taken below {MIN_CLOCK_SHARE:.0%} of the default SM clock ({default})"

    def start(self) -> None:
        self.kept_mhz = []

    def read(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetClockInfo(self.handle, NVML_CLOCK_SM))
        except Exception as exc:
            self.note = f"SM clock unreadable: {type(exc).__name__}: {exc}"
            return None

    def lost(self, before, after, wall_ns: int) -> float:
        clocks = [c for c in (before, after) if c is not None]
        if not clocks or not self.default_mhz:
            return 0.0
        if min(clocks) < MIN_CLOCK_SHARE * self.default_mhz:
            return 1.0
        self.kept_mhz.append(sum(clocks) / len(clocks))
        return 0.0

    def cpu_ns(self, before, after) -> None:
        return None

    @property
    def mean_clock_mhz(self) -> float | None:
        return sum(self.kept_mhz) / len(self.kept_mhz) if self.kept_mhz else None

    def close(self) -> None:
        pass


def cpu_probe() -> Probe:
    """The best probe this machine offers for CPU timing."""
    return SchedstatProbe() if SchedstatProbe.available() else CpuTimeProbe()
