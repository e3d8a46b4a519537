"""Clocks: how a block of calls is timed on each device, and a fake one for tests.

A `Clock` times ``n`` back-to-back calls of a function on the device's own timeline
(`CpuClock`: ``perf_counter_ns``; `CudaClock`: CUDA events on the current stream) and reads
host wall time for budgeting. `FakeClock` is a seeded, deterministic stand-in so the timing
engine's decisions can be tested exactly, as ``torch.utils.benchmark.Timer`` is tested with an
injected timer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch


class Clock(Protocol):
    """Times blocks of calls on a device's own timeline; what `measure` needs of a clock."""

    name: str

    def now_ns(self) -> int:
        """Host wall time in ns, for warmup and time-cap budgeting."""
        ...

    def time_block(self, fn: Callable[[], object], n: int) -> int:
        """Elapsed ns for ``n`` back-to-back calls of ``fn``, including one read's overhead."""
        ...

    def sync(self) -> None:
        """Wait until work queued on the device has finished."""
        ...


class CpuClock:
    """``time.perf_counter_ns`` around the calls; CPU work is synchronous, so sync is a no-op."""

    name = "cpu_perf_counter"

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def time_block(self, fn: Callable[[], object], n: int) -> int:
        read = time.perf_counter_ns
        start = read()
        for _ in range(n):
            fn()
        return read() - start

    def sync(self) -> None:
        pass


def _require_cuda(what: str) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{what} needs a CUDA device, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})"
        )


class CudaClock:
    """CUDA events recorded on the current stream around the calls, then synchronized.

    The GPU's own timestamps: host launch latency is excluded as long as the device has queued
    work, and anything enqueued before the start event (a cache flush) is not counted. Event
    resolution is about 0.5 us, which the block size absorbs like any other read overhead.
    """

    name = "cuda_event"

    def __init__(self, device: str | torch.device = "cuda"):
        _require_cuda("CudaClock")
        dev = torch.device(device)
        if dev.type != "cuda":
            raise ValueError(f"device: CudaClock needs a CUDA device, got {str(dev)!r}")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", index)

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def time_block(self, fn: Callable[[], object], n: int) -> int:
        with torch.cuda.device(self.device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
        return round(start.elapsed_time(end) * 1e6)  # elapsed_time is in ms

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)


CostSource = float | Sequence[float] | Callable[[random.Random], float]


class FakeClock:
    """Deterministic clock for tests: virtual time advanced by a fake per-call cost.

    ``cost_ns`` is a constant, a sequence (cycled, one entry per call) or a function drawing
    from a ``random.Random(seed)``. Every read costs ``overhead_ns`` of virtual time, so a block
    of n calls reads ``sum(costs) + overhead_ns``. ``fn`` is still called, so tests can count
    calls; ``n_calls`` counts them and ``in_block`` is True while a block is being timed.
    """

    name = "fake"

    def __init__(self, cost_ns: CostSource, overhead_ns: int = 0, seed: int = 0):
        self.cost_ns = cost_ns
        self.overhead_ns = overhead_ns
        self.n_calls = 0
        self.in_block = False
        self._rng = random.Random(seed)
        self._t_ns = 0

    def _next_cost_ns(self) -> int:
        source = self.cost_ns
        if callable(source):
            cost = source(self._rng)
        elif isinstance(source, int | float):
            cost = source
        else:
            cost = source[self.n_calls % len(source)]
        return max(0, round(cost))

    def now_ns(self) -> int:
        t = self._t_ns
        self._t_ns += self.overhead_ns
        return t

    def time_block(self, fn: Callable[[], object], n: int) -> int:
        start = self.now_ns()
        self.in_block = True
        for _ in range(n):
            fn()
            self._t_ns += self._next_cost_ns()
            self.n_calls += 1
        self.in_block = False
        return self.now_ns() - start

    def sync(self) -> None:
        pass


def clock_for(device: str | torch.device, cuda_timing: str = "events") -> Clock:
    """The clock that times work on ``device``: for CUDA the one ``cuda_timing`` names
    (`convbench.measure.cuda_timing`: events, graph, blocking), `CpuClock` for the CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        from convbench.measure.cuda_timing import cuda_clock

        return cuda_clock(dev, cuda_timing)
    if dev.type == "cpu":
        return CpuClock()
    raise ValueError(f"device: no clock for device type {dev.type!r} (expected 'cpu' or 'cuda')")


def _noop() -> None:
    pass


def measure_overhead(clock: Clock, repeats: int = 101) -> int:
    """Timer overhead in ns: the median reading of an empty block (two reads, nothing between).

    This is the fixed cost every sample carries on top of its calls; block sizing keeps it below
    ``TimingConfig.max_overhead`` of a sample.
    """
    return round(float(np.median([clock.time_block(_noop, 0) for _ in range(repeats)])))
