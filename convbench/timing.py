"""Timing engine: warmup by time, block sizing, adaptive stopping, cold/warm cache, raw samples.

One code path for every clock. A `Clock` times ``n`` back-to-back calls of a function on the
device's own timeline (`CpuClock`: ``perf_counter_ns``; `CudaClock`: CUDA events on the
current stream) and reads host wall time for budgeting. `FakeClock` is a seeded, deterministic
stand-in so the engine's decisions can be tested exactly, as ``torch.utils.benchmark.Timer``
is tested with an injected timer.

`measure` runs three phases:

1. **Warmup** for ``warmup_s`` of wall time (at least one call). It absorbs first-call costs
   (allocator growth, lazy init, cuDNN/oneDNN autotuning, thread pool start) and estimates the
   per-call time, timing blocks that double until the clock overhead is negligible in them
   (a single-call reading of a cheap function mostly measures the timer).
2. **Block size**: each sample times ``block_size`` back-to-back calls and records their mean,
   so that one clock read's overhead is below ``max_overhead`` of a sample. A sample is then a
   block mean, and the samples' spread (and their median's CI) describes block means rather
   than single calls; hence the smallest block that keeps the overhead negligible (the
   trade-off ``torch.utils.benchmark.Timer.blocked_autorange`` documents).
3. **Sampling** until the ``confidence`` CI of the median is within ``±rel_ci`` of it (after at
   least ``min_samples``; stop reason ``"ci"``), or ``max_samples`` (``"max_samples"``), or
   ``max_time_s`` of wall time in this phase (``"time_cap"``, a hard cap: a case slower than the
   cap gets a single sample).

Cold mode calls ``flush()`` (see `make_flush`) before every sample, outside the timed region,
and uses block size 1, because a second call in the same block would find the cache warm. For
functions whose cost is near the clock overhead the overhead then exceeds ``max_overhead``;
`Measurement.overhead_fraction` records by how much, so a report can flag it.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from convbench import stats as _stats

Mode = Literal["warm", "cold"]
StopReason = Literal["ci", "time_cap", "max_samples"]

#: Fallback last-level cache size when sysfs does not say (larger than most server LLC slices).
DEFAULT_CPU_LLC_BYTES = 64 * 2**20
#: Fallback L2 size when the CUDA device properties do not say (above every current GPU's L2:
#: A100 40 MiB, H100/H200 50 MiB, B200 126 MiB).
DEFAULT_GPU_L2_BYTES = 128 * 2**20
#: Flush buffers are this many times the cache size: writing exactly the cache size leaves some
#: old lines resident (set associativity, non-LRU replacement, non-inclusive LLCs, partitioned
#: GPU L2), and the extra bytes cost microseconds on a GPU, milliseconds on a CPU.
FLUSH_FACTOR = 2
#: Warmup blocks stop doubling here, whatever the clock says (a guard against a zero-cost fake).
_MAX_WARMUP_BLOCK = 2**20
_CPU_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


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


def clock_for(device: str | torch.device) -> Clock:
    """The clock that times work on ``device``: `CudaClock` for CUDA, `CpuClock` for the CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return CudaClock(dev)
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


def block_size_for(per_call_ns: float, overhead_ns: float, max_overhead: float) -> int:
    """Fewest back-to-back calls whose total makes ``overhead_ns`` < ``max_overhead`` of it."""
    if overhead_ns <= 0:
        return 1
    return math.floor(overhead_ns / (max_overhead * max(per_call_ns, 1.0))) + 1


@dataclass(frozen=True)
class TimingConfig:
    """How to time one case; see the module docstring for the phases these drive.

    ``rel_ci``: stop once the ``confidence`` CI of the median lies within ``±rel_ci`` of the
    median. ``max_time_s`` caps the sampling phase's wall time (flushes included).
    ``max_overhead``: largest fraction of a sample the clock overhead may take (warm mode).
    """

    warmup_s: float = 0.1
    min_samples: int = 10
    max_samples: int = 1000
    max_time_s: float = 2.0
    rel_ci: float = 0.01
    confidence: float = 0.95
    max_overhead: float = 0.01
    mode: Mode = "warm"

    def __post_init__(self) -> None:
        checks = [
            ("warmup_s", self.warmup_s >= 0, "a number >= 0"),
            ("min_samples", self.min_samples >= 1, "an integer >= 1"),
            ("max_samples", self.max_samples >= self.min_samples, "an integer >= min_samples"),
            ("max_time_s", self.max_time_s > 0, "a number > 0"),
            ("rel_ci", self.rel_ci > 0, "a number > 0"),
            ("confidence", 0 < self.confidence < 1, "a number in (0, 1)"),
            ("max_overhead", 0 < self.max_overhead < 1, "a number in (0, 1)"),
            ("mode", self.mode in ("warm", "cold"), "'warm' or 'cold'"),
        ]
        for name, ok, expected in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"TimingConfig.{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class Measurement:
    """What `measure` saw: raw per-call samples plus how they were taken.

    ``samples_ms[i]`` is the mean per-call time of sample i's block of ``block_size`` calls;
    statistics are derived from them on demand (`stats`), never stored instead of them.
    ``per_call_estimate_ns`` is the warmup's estimate that chose the block size.
    ``timed_ms`` is the wall time of the sampling phase (flushes included).
    """

    samples_ms: tuple[float, ...]
    block_size: int
    n_warmup_calls: int
    warmup_ms: float
    per_call_estimate_ns: float
    stop_reason: StopReason
    mode: Mode
    clock: str
    clock_overhead_ns: int
    timed_ms: float
    confidence: float = 0.95

    @cached_property
    def stats(self) -> _stats.SampleStats:
        """Median, IQR, mean, std, min, max and the median's CI, from ``samples_ms``."""
        return _stats.summarize(self.samples_ms, self.confidence)

    @property
    def n_samples(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return self.stats.median_ms

    @property
    def iqr_ms(self) -> float:
        return self.stats.iqr_ms

    @property
    def overhead_fraction(self) -> float:
        """Clock overhead as a fraction of a median sample (a block of calls)."""
        sample_ns = self.median_ms * 1e6 * self.block_size
        return self.clock_overhead_ns / sample_ns if sample_ns > 0 else math.inf


def _ci_is_narrow(ordered_ms: list[float], config: TimingConfig) -> bool:
    """The stop test on already-sorted samples: the median's CI within ``±rel_ci``."""
    n = len(ordered_ms)
    ranks = _stats.median_ci_ranks(n, config.confidence)
    if ranks is None:
        return False
    mid = n // 2
    median = ordered_ms[mid] if n % 2 else (ordered_ms[mid - 1] + ordered_ms[mid]) / 2.0
    low, high = ordered_ms[ranks[0]], ordered_ms[ranks[1]]
    return _stats.rel_halfwidth(median, low, high) <= config.rel_ci


def _warmup(
    fn: Callable[[], object], config: TimingConfig, clock: Clock, overhead_ns: int
) -> tuple[int, int, float]:
    """Call ``fn`` for ``warmup_s`` (at least once); return (calls, wall ns, per-call ns).

    Blocks double while a block is shorter than ``overhead / max_overhead``, so the per-call
    estimate of a cheap function comes from blocks long enough for the overhead to be
    negligible; the estimate is the median reading at the final block size, less the overhead.
    """
    target_ns = overhead_ns / config.max_overhead
    start = clock.now_ns()
    deadline = start + round(config.warmup_s * 1e9)
    block, n_calls = 1, 0
    readings: list[int] = []  # at the current block size
    while True:
        elapsed = clock.time_block(fn, block)
        n_calls += block
        readings.append(elapsed)
        now = clock.now_ns()
        if now >= deadline:
            break
        if elapsed < target_ns and block < _MAX_WARMUP_BLOCK:
            block *= 2
            readings = []
    per_call_ns = max(float(np.median(readings)) - overhead_ns, 0.0) / block
    return n_calls, now - start, per_call_ns


def measure(
    fn: Callable[[], object],
    config: TimingConfig | None = None,
    clock: Clock | None = None,
    flush: Callable[[], object] | None = None,
) -> Measurement:
    """Time ``fn()`` on ``clock`` (default `CpuClock`) as ``config`` says; see the module doc.

    ``flush`` is required in cold mode (called before each sample, outside the timed region)
    and refused in warm mode. ``fn`` must do the whole operation, including anything it needs
    to enqueue on the device; the clock's reads bracket it.
    """
    config = TimingConfig() if config is None else config
    clock = CpuClock() if clock is None else clock
    if config.mode == "cold" and flush is None:
        raise ValueError("flush: cold mode needs a cache flush callable (see make_flush)")
    if config.mode == "warm" and flush is not None:
        raise ValueError("flush: only used in cold mode, but mode is 'warm'")

    overhead_ns = measure_overhead(clock)
    clock.sync()
    n_warmup_calls, warmup_ns, per_call_ns = _warmup(fn, config, clock, overhead_ns)
    if config.mode == "cold":
        block = 1
    else:
        block = block_size_for(per_call_ns, overhead_ns, config.max_overhead)

    samples: list[float] = []
    ordered: list[float] = []
    cap_ns = round(config.max_time_s * 1e9)
    timed_start = clock.now_ns()
    while True:
        if flush is not None:
            flush()
        sample_ms = clock.time_block(fn, block) / block / 1e6
        samples.append(sample_ms)
        bisect.insort(ordered, sample_ms)
        if len(samples) >= config.min_samples and _ci_is_narrow(ordered, config):
            reason: StopReason = "ci"
            break
        if len(samples) >= config.max_samples:
            reason = "max_samples"
            break
        if clock.now_ns() - timed_start >= cap_ns:
            reason = "time_cap"
            break
    timed_ns = clock.now_ns() - timed_start

    return Measurement(
        samples_ms=tuple(samples),
        block_size=block,
        n_warmup_calls=n_warmup_calls,
        warmup_ms=warmup_ns / 1e6,
        per_call_estimate_ns=per_call_ns,
        stop_reason=reason,
        mode=config.mode,
        clock=clock.name,
        clock_overhead_ns=overhead_ns,
        timed_ms=timed_ns / 1e6,
        confidence=config.confidence,
    )


def cpu_llc_bytes(cache_dir: Path = _CPU_CACHE_DIR) -> int | None:
    """Size of cpu0's last-level data/unified cache from sysfs, or None if it cannot be read."""
    best: tuple[int, int] | None = None  # (level, bytes)
    for index in sorted(cache_dir.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = _parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and (best is None or (level, size) > best):
            best = (level, size)
    return best[1] if best else None


def _parse_cache_size(text: str) -> int:
    """'32768K' -> 33554432; sysfs writes K, sometimes M or G, or a bare byte count."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    return int(number) * scale


def gpu_l2_bytes(device: str | torch.device = "cuda") -> int | None:
    """L2 size the CUDA runtime reports for ``device``, or None if it reports none."""
    _require_cuda("gpu_l2_bytes")
    size = getattr(torch.cuda.get_device_properties(torch.device(device)), "L2_cache_size", 0)
    return int(size) if size else None


def flush_size_bytes(device: str | torch.device) -> int:
    """Bytes a flush buffer needs on ``device``: `FLUSH_FACTOR` times its L2 (GPU) or LLC (CPU).

    Falls back to `DEFAULT_GPU_L2_BYTES` / `DEFAULT_CPU_LLC_BYTES` when the size is unknown.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return FLUSH_FACTOR * (gpu_l2_bytes(dev) or DEFAULT_GPU_L2_BYTES)
    if dev.type == "cpu":
        return FLUSH_FACTOR * (cpu_llc_bytes() or DEFAULT_CPU_LLC_BYTES)
    raise ValueError(f"device: no cache flush for device type {dev.type!r}")


@dataclass(frozen=True, eq=False)
class CacheFlush:
    """Evicts the device's cache by writing a buffer larger than it; call it before a sample.

    GPU: ``zero_()`` on the buffer (a device memset, through L2, as triton's ``do_bench``).
    CPU: ``add_(1)`` on a uint8 buffer, which reads and writes every line with ordinary stores
    (a large ``fill_``/memset may use non-temporal stores that bypass the cache).
    ``size_bytes`` is what a result should record.
    """

    device: str
    size_bytes: int
    buffer: torch.Tensor = field(repr=False)

    def __call__(self) -> None:
        if self.buffer.is_cuda:
            self.buffer.zero_()
        else:
            self.buffer.add_(1)


def make_flush(device: str | torch.device) -> CacheFlush:
    """A `CacheFlush` for ``device`` with a buffer of `flush_size_bytes` allocated on it."""
    dev = torch.device(device)
    size = flush_size_bytes(dev)
    buffer = torch.zeros(size, dtype=torch.uint8, device=dev)
    return CacheFlush(device=str(dev), size_bytes=size, buffer=buffer)
