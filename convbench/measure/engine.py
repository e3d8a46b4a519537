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
   cap gets a single sample — unless ``floor_samples`` asks for more, up to 10 × the cap).

Cold mode calls ``flush()`` (see `convbench.measure.flush`) before every sample, outside the
timed region, and uses block size 1, because a second call in the same block would find the
cache warm. For functions whose cost is near the clock overhead the overhead then exceeds
``max_overhead``; `Measurement.overhead_fraction` records by how much, so a report can flag it.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from convbench.analysis import stats as _stats
from convbench.measure.clocks import Clock, CpuClock, measure_overhead
from convbench.measure.config import Mode, StopReason, TimingConfig
from convbench.measure.disturbance import Probe
from convbench.measure.pace import MIN_READINGS, PaceReference, pace_of

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

    ``samples_ms[i]`` is the mean per-call time of sample i's block of ``block_size`` calls,
    taken in round ``rounds[i]``; statistics are derived from them on demand (`stats`), never
    stored instead of them. ``discarded_ms`` are the samples the disturbance probe flagged:
    kept, but not in the statistics (unless no clean sample exists at all).
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
    discarded_ms: tuple[float, ...] = ()
    rounds: tuple[int, ...] = ()
    probe: str | None = None
    #: Fewer than ``min_samples`` undisturbed samples: the statistics are not to be trusted.
    disturbed: bool = False
    #: The medians of the successive stretches of samples (`drift`) moved by more than
    #: ``max_drift`` while this was measured: the machine changed pace under it.
    unsteady: bool = False
    #: max/min - 1 of those stretch medians (0 when too few samples to tell).
    drift: float = 0.0
    #: Samples the probe flagged, whether or not they had to be used.
    n_discarded: int = 0
    #: Samples the probe did not flag (``samples_ms`` holds the flagged ones when this is 0).
    n_clean: int = 0
    #: The process's CPU time over wall time during this function's samples (×100: 200 = two
    #: cores busy), from the probe; None without one.
    cpu_util_pct: float | None = None
    #: Host ``perf_counter_ns`` (start, end) of each sample in ``samples_ms``: where the
    #: function ran, for attributing telemetry sampled alongside.
    windows: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)
    #: The host's pace while this was sampled (`convbench.measure.pace`): the reference
    #: kernel's median reading (µs) and its ratio to the process's usual reading; None
    #: without a pace reference or with too few readings.
    pace_us: float | None = None
    pace: float | None = None
    #: ``pace`` was off by more than ``max_pace``: the machine was unusually slow (or fast).
    off_pace: bool = False

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


def per_round_cap(config: TimingConfig) -> int:
    """The most samples one function takes in one turn of `measure_interleaved`: few enough
    that ``min_rounds`` turns fit in ``max_samples`` (a fast kernel's turn is shorter than
    ``round_s`` then)."""
    return max(1, config.max_samples // config.min_rounds)


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
    probe: Probe | None = None,
) -> Measurement:
    """Time ``fn()`` on ``clock`` (default `CpuClock`) as ``config`` says; see the module doc.

    ``flush`` is required in cold mode (called before each sample, outside the timed region)
    and refused in warm mode. ``fn`` must do the whole operation, including anything it needs
    to enqueue on the device; the clock's reads bracket it.
    """
    return measure_interleaved([fn], config, clock, flush, probe=probe)[0]


def measure_interleaved(
    fns: Sequence[Callable[[], object]],
    config: TimingConfig | None = None,
    clock: Clock | None = None,
    flush: Callable[[], object] | None = None,
    seed: int = 0,
    probe: Probe | None = None,
    pace: PaceReference | None = None,
) -> list[Measurement]:
    """Time several functions in interleaved rounds: each round takes one sample of every
    function, in an order shuffled per round (seeded), so that drift — a neighbour starting,
    a clock slowing — falls on all of them alike, and samples of one round pair up across
    functions. Warmup and block size are each function's own. One function is plain
    `measure`.

    With a ``probe`` (`convbench.measure.disturbance`), a sample whose ``lost`` share
    exceeds ``max_lost`` is disturbed: kept apart, out of the statistics and of the stopping
    rule, and sampling goes on until ``min_samples`` clean ones exist (or a cap). Sampling
    stops when every function's median CI is narrow, at ``max_samples`` samples, or at
    ``max_time_s`` × the number of functions.

    With a ``pace`` reference (`convbench.measure.pace`), the reference kernel is timed before
    a round at most once per ``round_s``, outside the timed blocks; each function's pace is
    the median reading over the rounds it sampled in, relative to the process's usual one.
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
    if probe is not None:
        probe.start()  # after warmup: the threads the work uses exist now

    tracks = [_Track(fn, block, w) for fn, block, w in zip(fns, blocks, warmups, strict=True)]
    single = len(fns) == 1
    burst_ns = round(config.round_s * 1e9)
    rng = random.Random(seed)
    timed_start = clock.now_ns()
    round_index = 0
    reading = (-1, 0)  # (serial number, ns) of the latest pace reading
    last_read = None
    try:
        while True:
            active = [t for t in tracks if t.stop_reason is None]
            if not active:
                break
            rng.shuffle(active)
            for track in active:
                if pace is not None:  # at most once per round_s, on the engine's clock
                    now = clock.now_ns()
                    if last_read is None or now - last_read >= burst_ns:
                        reading = (reading[0] + 1, pace.take())
                        last_read = clock.now_ns()
                    if not track.pace or track.pace[-1][0] != reading[0]:
                        track.pace.append(reading)
                track.burst(config, clock, flush, probe, round_index, single, burst_ns)
            round_index += 1
    finally:
        if probe is not None:
            probe.close()
    timed_ns = clock.now_ns() - timed_start
    found = [track.measurement(config, clock, overhead_ns, timed_ns, probe) for track in tracks]
    if pace is None:
        return found
    # A measurement that stopped within a few round_s has too few readings for a median:
    # topped up with readings taken right after it (~0.1 ms).
    need = max(MIN_READINGS - len(track.pace) for track in tracks)
    extra = [(-1, pace.take()) for _ in range(need)]
    for track in tracks:
        track.pace += extra[: max(0, MIN_READINGS - len(track.pace))]
    baseline = pace.baseline_ns
    return [track.paced(m, baseline, config) for track, m in zip(tracks, found, strict=True)]


def stretch_drift(samples_ms: Sequence[float], stretches: int = 4) -> float:
    """How far the pace moved during a measurement: the samples, in the order taken, cut
    into ``stretches`` equal stretches (at least 5 samples each, else 0); max/min - 1 of their
    medians. A steady machine gives a few percent; a neighbour or host that changed pace
    midway gives its size."""
    n = len(samples_ms)
    k = min(stretches, n // 5)
    if k < 2:
        return 0.0
    medians = [float(np.median(samples_ms[i * n // k : (i + 1) * n // k])) for i in range(k)]
    low = min(medians)
    return max(medians) / low - 1.0 if low > 0 else 0.0


class _Track:
    """One function's state while the functions of a group sample in rounds."""

    def __init__(self, fn, block: int, warmup: tuple[int, int, float]):
        self.fn, self.block, self.warmup = fn, block, warmup
        self.clean: list[float] = []
        self.ordered: list[float] = []
        self.rounds: list[int] = []
        self.windows: list[tuple[int, int]] = []
        self.discarded: list[float] = []
        self.busy = [0, 0]  # CPU ns, wall ns of the clean samples
        self.spent_ns = 0  # this function's share of the sampling phase (flushes included)
        self.n_rounds = 0
        self.stop_reason: StopReason | None = None
        self.pace: list[tuple[int, int]] = []  # (serial, ns) of the readings before its bursts

    def burst(self, config, clock, flush, probe, round_index, single, burst_ns) -> None:
        """This round's samples: after untimed re-warm blocks (the other functions just ran
        and left their caches, branch predictors and allocator state behind), as many samples
        as fit in ``burst_ns`` (at least one). Alone, one sample per round, no re-warm."""
        t0 = clock.now_ns()
        sample_ns = max(self.warmup[2] * self.block, 1.0)
        n = 1 if single else max(1, min(round(burst_ns / sample_ns), per_round_cap(config)))
        if not single and flush is None and n > 1:
            # Re-warm: the first calls after a switch run up to ~20% slow and recover over
            # a few more; a fifth of the burst (at least two blocks) absorbs that.
            for _ in range(max(2, round(0.2 * n))):
                clock.time_block(self.fn, self.block)
        for _ in range(n):
            if flush is not None:
                flush()
            before = probe.read() if probe is not None else None
            start = time.perf_counter_ns()
            elapsed = clock.time_block(self.fn, self.block)
            end = time.perf_counter_ns()
            sample_ms = elapsed / self.block / 1e6
            if probe is not None:
                after = probe.read()
                if probe.lost(before, after, elapsed) > config.max_lost:
                    self.discarded.append(sample_ms)
                    continue
                cpu = probe.cpu_ns(before, after)
                if cpu is not None:
                    self.busy[0] += cpu
                    self.busy[1] += end - start
            self.clean.append(sample_ms)
            self.rounds.append(round_index)
            self.windows.append((start, end))
            bisect.insort(self.ordered, sample_ms)
        self.n_rounds += 1
        self.spent_ns += clock.now_ns() - t0
        self._check_stop(config)

    def paced(self, m: Measurement, baseline_ns: float, config) -> Measurement:
        pace_us, pace = pace_of([ns for _, ns in self.pace], baseline_ns)
        off = pace is not None and abs(pace - 1.0) > config.max_pace
        return replace(m, pace_us=pace_us, pace=pace, off_pace=off)

    def _check_stop(self, config) -> None:
        # One sample per turn (a slow call): the turns are the samples, and min_samples
        # governs. Several per turn: they move together, so the turns must be enough.
        one_each = len(self.clean) + len(self.discarded) <= self.n_rounds
        enough_rounds = one_each or self.n_rounds >= config.min_rounds
        if (
            len(self.clean) >= config.min_samples
            and enough_rounds
            and _ci_is_narrow(self.ordered, config)
        ):
            self.stop_reason = "ci"
        elif len(self.clean) >= config.max_samples and enough_rounds:
            self.stop_reason = "max_samples"
        elif len(self.clean) + len(self.discarded) >= 2 * config.max_samples:
            self.stop_reason = "max_samples"  # mostly disturbed: give up, flagged
        elif self.spent_ns >= config.max_time_s * 1e9 and (
            len(self.clean) >= config.floor_samples or self.spent_ns >= 10 * config.max_time_s * 1e9
        ):
            self.stop_reason = "time_cap"

    def measurement(self, config, clock, overhead_ns, timed_ns, probe) -> Measurement:
        samples, kept_apart, index = self.clean, self.discarded, self.rounds
        if not samples:  # nothing clean: the disturbed samples are all there is (flagged)
            samples, kept_apart, index = kept_apart, [], list(range(len(kept_apart)))
        n_calls, warmup_ns, per_call_ns = self.warmup
        drift = stretch_drift(samples)
        return Measurement(
            samples_ms=tuple(samples),
            block_size=self.block,
            n_warmup_calls=n_calls,
            warmup_ms=warmup_ns / 1e6,
            per_call_estimate_ns=per_call_ns,
            stop_reason=self.stop_reason,
            mode=config.mode,
            clock=clock.name,
            clock_overhead_ns=overhead_ns,
            timed_ms=timed_ns / 1e6,
            confidence=config.confidence,
            discarded_ms=tuple(kept_apart),
            rounds=tuple(index),
            probe=None if probe is None else probe.name,
            disturbed=bool(self.discarded) and len(self.clean) < config.min_samples,
            unsteady=drift > config.max_drift,
            drift=drift,
            n_discarded=len(self.discarded),
            n_clean=len(self.clean),
            cpu_util_pct=100.0 * self.busy[0] / self.busy[1] if self.busy[1] else None,
            windows=tuple(self.windows),
        )
