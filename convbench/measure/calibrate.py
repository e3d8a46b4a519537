"""How good is the timing on this machine? Overheads and the smallest reliably timed kernel.

`calibrate` measures, on one device:

* ``clock_overhead_ns`` — one empty reading of the device clock (two reads, nothing between):
  the fixed cost every sample carries before block sizing divides it among the block's calls;
* ``empty_call_ns`` — what the timing engine (`convbench.measure.engine.measure`) reports per
  call for a function that does nothing: the per-call floor of the harness (Python call +
  block loop), i.e. the timing overhead per call;
* for a ladder of real convolutions (`F.conv2d`, from tiny to medium), the median
  `measure` reports against a reference per-call time taken the plain way — the median over
  blocks of back-to-back calls, each block ≥ 5 ms so no clock or loop overhead matters, once
  before and once after — and the relative difference. ``smallest_within_ms`` is the
  smallest kernel time from which on every rung is within ``tolerance`` (±5% by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convbench.measure.clocks import clock_for, measure_overhead
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure


@dataclass(frozen=True)
class Rung:
    label: str
    reference_ms: float
    measured_ms: float

    @property
    def rel_diff(self) -> float:
        return self.measured_ms / self.reference_ms - 1.0


@dataclass(frozen=True)
class Calibration:
    device: str
    threads: int
    clock_overhead_ns: float
    empty_call_ns: float
    rungs: tuple[Rung, ...]
    tolerance: float

    @property
    def smallest_within_ms(self) -> float | None:
        """Smallest reference time from which every larger rung is within tolerance."""
        best = None
        for rung in sorted(self.rungs, key=lambda r: -r.reference_ms):
            if abs(rung.rel_diff) > self.tolerance:
                break
            best = rung.reference_ms
        return best


LADDER = [  # (batch, channels, spatial): 3x3 convs from ~1 µs to ~10 ms on a CPU core
    (1, 1, 4),
    (1, 2, 8),
    (1, 4, 8),
    (1, 8, 16),
    (1, 16, 16),
    (1, 32, 32),
    (2, 64, 32),
    (4, 64, 56),
    (8, 128, 28),
]


def _reference_ms(fn, device, seconds: float, block_s: float = 0.005) -> float:
    """Per-call time the plain way: blocks of back-to-back calls long enough (``block_s``)
    that no overhead matters, the median of their means (a median, so that another process
    stealing the core now and then does not decide the answer)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    per_call = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(block_s / per_call))
    means = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(means) < 5:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        means.append((time.perf_counter() - t0) / calls)
    means.sort()
    return means[len(means) // 2] * 1e3


def calibrate(
    device: str = "cpu",
    tolerance: float = 0.05,
    reference_s: float = 0.3,
    config: TimingConfig | None = None,
) -> Calibration:
    dev = torch.device(device)
    clock = clock_for(dev)
    config = config or TimingConfig(warmup_s=0.1, max_time_s=1.0, min_samples=10)
    overhead = measure_overhead(clock, repeats=1001)
    empty = measure(lambda: None, config, clock).median_ms * 1e6
    rungs = []
    with torch.no_grad():
        for n, c, s in LADDER:
            x = torch.randn(n, c, s, s, device=dev)
            w = torch.randn(c, c, 3, 3, device=dev)

            def fn(x=x, w=w):
                return F.conv2d(x, w, padding=1)

            before = _reference_ms(fn, dev, reference_s)
            measured = measure(fn, config, clock).median_ms
            after = _reference_ms(fn, dev, reference_s)
            rungs.append(Rung(f"{n}x{c}x{s}x{s} 3x3", (before + after) / 2, measured))
    return Calibration(str(dev), torch.get_num_threads(), overhead, empty, tuple(rungs), tolerance)
