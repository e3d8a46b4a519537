"""Timing engine: warmup by time, block sizing, adaptive stopping, cold/warm cache, raw samples.

One code path for every clock (`convbench.measure.clocks`): the engine only calls a clock's
``time_block``/``now_ns``/``sync``, so it is pure given an injected `FakeClock`.

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

Cold mode calls ``flush()`` (see `convbench.measure.flush`) before every sample, outside the
timed region, and uses block size 1, because a second call in the same block would find the
cache warm. For functions whose cost is near the clock overhead the overhead then exceeds
``max_overhead``; `Measurement.overhead_fraction` records by how much, so a report can flag it.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from convbench.analysis import stats as _stats
from convbench.measure.clocks import Clock, CpuClock, measure_overhead
from convbench.measure.config import Mode, StopReason, TimingConfig

#: Warmup blocks stop doubling here, whatever the clock says (a guard against a zero-cost fake).
_MAX_WARMUP_BLOCK = 2**20


def block_size_for(per_call_ns: float, overhead_ns: float, max_overhead: float) -> int:
    """Fewest back-to-back calls whose total makes ``overhead_ns`` < ``max_overhead`` of it."""
    if overhead_ns <= 0:
        return 1
    return math.floor(overhead_ns / (max_overhead * max(per_call_ns, 1.0))) + 1


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
    return measure_interleaved([fn], config, clock, flush)[0]


def measure_interleaved(
    fns: Sequence[Callable[[], object]],
    config: TimingConfig | None = None,
    clock: Clock | None = None,
    flush: Callable[[], object] | None = None,
    seed: int = 0,
) -> list[Measurement]:
    """Time several functions in interleaved rounds: each round takes one sample of every
    function, in an order shuffled per round (seeded), so that drift — a neighbour starting,
    a clock slowing — falls on all of them alike, and sample ``i`` of every function comes
    from the same round. Warmup and block size are each function's own. Sampling stops when
    every function's median CI is narrow (after ``min_samples``), at ``max_samples``, or at
    ``max_time_s`` × the number of functions. One function is plain `measure`.
    """
    config = TimingConfig() if config is None else config
    clock = CpuClock() if clock is None else clock
    if config.mode == "cold" and flush is None:
        raise ValueError("flush: cold mode needs a cache flush callable (see make_flush)")
    if config.mode == "warm" and flush is not None:
        raise ValueError("flush: only used in cold mode, but mode is 'warm'")
    if not fns:
        raise ValueError("fns: nothing to time")

    overhead_ns = measure_overhead(clock)
    clock.sync()
    warmups = [_warmup(fn, config, clock, overhead_ns) for fn in fns]
    if config.mode == "cold":
        blocks = [1] * len(fns)
    else:
        blocks = [block_size_for(w[2], overhead_ns, config.max_overhead) for w in warmups]

    samples: list[list[float]] = [[] for _ in fns]
    ordered: list[list[float]] = [[] for _ in fns]
    done = [False] * len(fns)
    rng = random.Random(seed)
    order = list(range(len(fns)))
    cap_ns = round(config.max_time_s * 1e9) * len(fns)
    timed_start = clock.now_ns()
    while True:
        if len(fns) > 1:
            rng.shuffle(order)
        for i in order:
            if flush is not None:
                flush()
            sample_ms = clock.time_block(fns[i], blocks[i]) / blocks[i] / 1e6
            samples[i].append(sample_ms)
            bisect.insort(ordered[i], sample_ms)
            if len(samples[i]) >= config.min_samples:
                done[i] = _ci_is_narrow(ordered[i], config)
        n = len(samples[0])
        if all(done):
            reason: StopReason = "ci"
            break
        if n >= config.max_samples:
            reason = "max_samples"
            break
        if clock.now_ns() - timed_start >= cap_ns:
            reason = "time_cap"
            break
    timed_ns = clock.now_ns() - timed_start

    return [
        Measurement(
            samples_ms=tuple(samples[i]),
            block_size=blocks[i],
            n_warmup_calls=warmups[i][0],
            warmup_ms=warmups[i][1] / 1e6,
            per_call_estimate_ns=warmups[i][2],
            stop_reason=reason,
            mode=config.mode,
            clock=clock.name,
            clock_overhead_ns=overhead_ns,
            timed_ms=timed_ns / 1e6,
            confidence=config.confidence,
        )
        for i in range(len(fns))
    ]
