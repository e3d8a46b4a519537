"""CUDA timing modes, around the hardware: fake captures, sleeps and events decide exactly."""

from __future__ import annotations

import pytest
import torch

from convbench.measure.cuda_timing import (
    MIN_HOLD_NS,
    CudaBlockingClock,
    CudaGraphClock,
    cuda_clock,
)


class FakeEvents:
    """Events on a virtual GPU timeline: ``gpu_ns`` advances as the test says."""

    def __init__(self):
        self.gpu_ns = 0

    def start(self):
        return self.gpu_ns

    def elapsed_ns(self, start):
        return self.gpu_ns - start


class FakeGraph:
    def __init__(self, fn, n, events, cost):
        self.fn, self.n, self.events, self.cost = fn, n, events, cost
        self.replays = 0

    def replay(self):
        self.replays += 1
        self.events.gpu_ns += self.n * self.cost  # one launch, no gaps


def test_graph_clock_captures_once_per_block_and_replays():
    events, captured = FakeEvents(), []

    def capture(fn, n, device):
        captured.append(n)
        return FakeGraph(fn, n, events, cost=1000)

    clock = CudaGraphClock("cpu", capture=capture, events=events)
    fn = lambda: None  # noqa: E731
    assert clock.time_block(fn, 4) == 4000 and clock.time_block(fn, 4) == 4000
    assert clock.time_block(fn, 8) == 8000
    assert captured == [4, 8]  # one capture per block size, then replays
    assert clock.time_block(fn, 0) == 0 and clock.note is None


def test_graph_clock_falls_back_to_events_with_the_reason():
    events, calls = FakeEvents(), []

    def capture(fn, n, device):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    def fn():
        calls.append(1)
        events.gpu_ns += 1500  # launches timed one by one

    clock = CudaGraphClock("cpu", capture=capture, events=events)
    assert clock.time_block(fn, 3) == 4500 and len(calls) == 3
    assert clock.fallback == (
        "graph capture failed (RuntimeError: operation not permitted when stream is "
        "capturing); timed with events"
    )
    assert clock.note == clock.fallback


def test_blocking_clock_holds_the_stream_longer_than_the_enqueue():
    events, sleeps = FakeEvents(), []
    host = {"ns": 0}

    def sleep(cycles):
        sleeps.append(cycles)

    def fn():
        host["ns"] += 15_000  # 15 µs of host time per launch
        events.gpu_ns += 2_000  # 2 µs kernels

    clock = CudaBlockingClock(
        "cpu", sleep=sleep, cycles_per_ns=1.5, events=events, host_ns=lambda: host["ns"]
    )
    assert clock.hold_ns(4) == MIN_HOLD_NS
    assert clock.time_block(fn, 4) == 8_000  # the GPU's time only
    assert sleeps == [round(MIN_HOLD_NS * 1.5)]
    assert clock.late == 1 and "1 of 1 blocks" in clock.note  # 60 µs of enqueue > 20 µs hold
    assert clock.hold_ns(4) == 120_000  # twice the enqueue seen
    clock.time_block(fn, 4)
    assert sleeps[-1] == round(120_000 * 1.5) and clock.late == 1  # held long enough now


def test_cuda_clock_names_the_modes():
    with pytest.raises(ValueError, match="--cuda-timing: expected one of events, graph, blocking"):
        cuda_clock("cpu", "cupti")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_and_blocking_agree_on_a_small_kernel():
    """On a GPU: a ~20 µs kernel within ±2% between graph and blocking timing."""
    from convbench.measure.config import TimingConfig
    from convbench.measure.engine import measure

    x = torch.randn(8, 64, 56, 56, device="cuda")
    w = torch.randn(64, 64, 3, 3, device="cuda")
    fn = lambda: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
    config = TimingConfig(warmup_s=0.2, max_time_s=1.0)
    graph = measure(fn, config, cuda_clock("cuda", "graph")).median_ms
    blocking = measure(fn, config, cuda_clock("cuda", "blocking")).median_ms
    assert abs(graph / blocking - 1) <= 0.02, (graph, blocking)
