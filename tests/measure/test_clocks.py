"""convbench.measure.clocks: the real CPU clock, and the CUDA clock around (and on) the
hardware."""

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch

from convbench.measure import flush as flush_module
from convbench.measure.clocks import CpuClock, CudaClock, clock_for
from convbench.measure.config import TimingConfig
from convbench.measure.engine import Measurement, measure
from convbench.measure.flush import flush_size_bytes, make_flush

MS = 1_000_000  # ns


def noop():
    pass


# --- real CPU clock ---------------------------------------------------------------------------


def test_cpu_clock_measures_a_torch_op():
    x, y = torch.randn(64, 64), torch.randn(64, 64)
    m = measure(lambda: torch.mm(x, y), TimingConfig(warmup_s=0.01, max_time_s=0.2))
    assert isinstance(m, Measurement)
    assert m.clock == "cpu_perf_counter"
    assert m.n_samples >= 1 and m.block_size >= 1 and m.n_warmup_calls >= 1
    assert all(s > 0 for s in m.samples_ms)
    assert m.stop_reason in ("ci", "time_cap", "max_samples")
    assert m.stats.min_ms <= m.median_ms <= m.stats.max_ms
    assert m.clock_overhead_ns > 0


def test_clock_for_cpu_and_unknown():
    assert isinstance(clock_for("cpu"), CpuClock)
    with pytest.raises(ValueError, match="meta"):
        clock_for("meta")


# --- CUDA paths, around the hardware ----------------------------------------------------------

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA errors")


@no_cuda
def test_cuda_paths_fail_clearly_without_cuda():
    with pytest.raises(RuntimeError, match="CudaClock needs a CUDA device"):
        CudaClock()
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        clock_for("cuda")
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        make_flush("cuda")


@pytest.mark.parametrize(("l2_bytes", "expected"), [(50 * 2**20, 100 * 2**20), (0, None)])
def test_cuda_flush_size_from_device_properties(monkeypatch, l2_bytes, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda dev: SimpleNamespace(L2_cache_size=l2_bytes)
    )
    expected = expected or 2 * flush_module.DEFAULT_GPU_L2_BYTES
    assert flush_size_bytes("cuda:0") == expected


class FakeEvent:
    """Stands in for torch.cuda.Event: 'elapsed' is 0.25 ms per fn call in the block."""

    log: list = []

    def __init__(self, enable_timing=False):
        assert enable_timing
        self.calls_at_record = None

    def record(self):
        self.calls_at_record = len(FakeEvent.log)
        FakeEvent.log.append("record")

    def synchronize(self):
        FakeEvent.log.append("sync")

    def elapsed_time(self, end):
        calls = FakeEvent.log[self.calls_at_record : end.calls_at_record].count("fn")
        return 0.25 * calls


@pytest.fixture
def fake_cuda(monkeypatch):
    FakeEvent.log = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda dev: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: None)
    return FakeEvent.log


def test_cuda_clock_times_a_block_with_events(fake_cuda):
    clock = CudaClock("cuda")
    assert clock.device == torch.device("cuda", 0)
    elapsed = clock.time_block(lambda: fake_cuda.append("fn"), 3)
    assert elapsed == round(0.75 * MS)  # elapsed_time's ms, in ns
    assert fake_cuda == ["record", "fn", "fn", "fn", "record", "sync"]


def test_cuda_clock_runs_the_same_engine(fake_cuda):
    clock = clock_for("cuda:0")
    assert isinstance(clock, CudaClock)
    m = measure(lambda: fake_cuda.append("fn"), TimingConfig(warmup_s=0, min_samples=6), clock)
    assert (m.clock, m.clock_overhead_ns, m.block_size) == ("cuda_event", 0, 1)
    assert (m.stop_reason, m.samples_ms) == ("ci", (0.25,) * 6)


# --- real CUDA --------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@needs_cuda
def test_cuda_measure_and_flush_on_device():
    x = torch.randn(256, 256, device="cuda")
    flush = make_flush("cuda")
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    assert flush.size_bytes == 2 * (l2 or flush_module.DEFAULT_GPU_L2_BYTES)
    config = TimingConfig(warmup_s=0.01, max_time_s=0.2, mode="cold")
    m = measure(lambda: x @ x, config, clock_for("cuda"), flush=flush)
    assert m.clock == "cuda_event" and m.block_size == 1
    assert m.n_samples >= 1 and all(s > 0 for s in m.samples_ms)
    assert not math.isnan(m.median_ms)
