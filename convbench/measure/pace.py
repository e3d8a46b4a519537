"""Host pace: a fixed reference kernel, timed between the rounds of every CPU measurement.

A virtual machine can run slower for a while without anything in the guest showing it:
measured on the 2-vCPU development VM, a 256×256 GEMM took 240 µs most of the time and
340–360 µs for bursts every few seconds, with steal time 0 and the process's CPU time per
wall time unchanged — the host (an SMT sibling, memory bandwidth, its clock) took the speed
away, not the guest's scheduler, so `convbench.measure.disturbance`'s schedstat probe cannot
see it. Every kernel slows alike: over 0.3 s windows a conv2d's median followed the reference
kernel's with correlation 0.9, and a fixed workload's window medians spread 0.89–1.14×.

`PaceReference` times a small fixed workload — a 128×128×128 float32 GEMM (compute) and a
256 KiB copy (memory), ~50 µs — at most once per ``round_s`` of timing, outside the timed
blocks. A measurement's ``pace`` is the median of the readings taken during its rounds over
the **baseline**, the median of every reading this process has taken (seeded by
`SEED_READINGS` at start): 1.0 at the usual pace, 1.2 when the host ran the reference 20 %
slower than usual while the measurement sampled. A result whose pace is off by more than
`TimingConfig.max_pace` is flagged (``disturbed``, with the pace in its reason): its median
is what the machine did then, not what it usually does. ``pace_us`` (the readings' median)
is stored too, so two runs can be compared at equal pace (`convbench calibrate
--interference` shows both).
"""

from __future__ import annotations

import statistics
import time
from collections import deque

#: Readings taken when the reference is created, so the first task has a baseline.
SEED_READINGS = 32
#: Readings a measurement needs before its pace is judged (a median of fewer is noise).
MIN_READINGS = 3
_KEEP = 4096  # readings the baseline remembers (oldest dropped first)


class PaceReference:
    """The reference kernel and the process's readings of it (see the module doc)."""

    def __init__(self, seed_readings: int = SEED_READINGS, timer=time.perf_counter_ns):
        import torch

        gen = torch.Generator().manual_seed(0)
        self._a = torch.randn(128, 128, generator=gen)
        self._b = torch.randn(128, 128, generator=gen)
        self._out = torch.empty(128, 128)
        self._src = torch.randn(64 * 1024, generator=gen)
        self._dst = torch.empty_like(self._src)
        self._timer = timer
        self._mm = torch.mm
        self._history: deque[int] = deque(maxlen=_KEEP)  # oldest dropped first
        #: The machine's usual reading (ns), when known from earlier runs; else the median
        #: of this process's readings is the baseline.
        self.usual_ns: float | None = None
        self.read_ns()  # first call: thread pool, caches
        for _ in range(seed_readings):
            self.record(self.read_ns())

    def _run(self) -> None:
        self._mm(self._a, self._b, out=self._out)
        self._dst.copy_(self._src)

    def read_ns(self) -> int:
        """One reading, in ns (not recorded): the workload once untimed — whatever ran before
        left its own data in the caches, and the reading must not depend on what that was —
        then the mean of two timed calls."""
        self._run()
        start = self._timer()
        self._run()
        self._run()
        return (self._timer() - start) // 2

    def record(self, reading_ns: int) -> None:
        self._history.append(reading_ns)

    def take(self) -> int:
        """Read and record; returns the reading (ns)."""
        reading = self.read_ns()
        self.record(reading)
        return reading

    @property
    def baseline_ns(self) -> float:
        # read once per measurement (not per reading): a median of ≤ 4096 values is cheap
        if self.usual_ns:
            return self.usual_ns
        return float(statistics.median(self._history)) if self._history else float("nan")


def pace_of(readings_ns: list[int], baseline_ns: float) -> tuple[float | None, float | None]:
    """(median reading in µs, median / baseline) of a measurement's readings; (None, None)
    with fewer than `MIN_READINGS` (pure)."""
    if len(readings_ns) < MIN_READINGS or not baseline_ns > 0:
        return None, None
    med = statistics.median(readings_ns)
    return med / 1e3, med / baseline_ns


def off_pace_reason(pace: float) -> str:
    """A flagged result's reason (pure)."""
    how = "slower" if pace > 1 else "faster"
    return (
        f"off pace: the host ran the reference kernel {abs(pace - 1):.0%} {how} than usual "
        "while this was measured"
    )


_REFERENCE: PaceReference | None = None


def reference(usual_us: float | None = None) -> PaceReference:
    """This process's reference (made on first use: ~2 ms of seed readings), its baseline
    set to ``usual_us`` (the machine's usual reading from earlier runs) or, with None, to
    the process's own readings."""
    global _REFERENCE
    if _REFERENCE is None:
        _REFERENCE = PaceReference()
    _REFERENCE.usual_ns = usual_us * 1e3 if usual_us else None
    return _REFERENCE


class FakePace:
    """A scripted `PaceReference` for tests of the engine: every reading ``reading_ns``
    against a baseline of ``baseline_ns`` (1300 against 1000: the host 30% slow)."""

    def __init__(self, reading_ns: int, baseline_ns: float = 1000.0):
        self.reading_ns, self.baseline_ns = reading_ns, baseline_ns

    def take(self) -> int:
        return self.reading_ns
