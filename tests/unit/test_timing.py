"""convbench.timing: the engine's decisions, asserted exactly with a seeded FakeClock."""

import contextlib
import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from convbench import timing
from convbench.stats import summarize
from convbench.timing import (
    CacheFlush,
    CpuClock,
    CudaClock,
    FakeClock,
    Measurement,
    TimingConfig,
    block_size_for,
    clock_for,
    flush_size_bytes,
    make_flush,
    measure,
    measure_overhead,
)

MS = 1_000_000  # ns


def noop():
    pass


# --- FakeClock --------------------------------------------------------------------------------


def test_fake_clock_reads_cost_plus_one_overhead():
    clock = FakeClock(cost_ns=[100, 200, 300], overhead_ns=7)
    assert clock.time_block(noop, 3) == 600 + 7
    assert clock.time_block(noop, 0) == 7
    assert clock.n_calls == 3
    assert measure_overhead(clock) == 7


def test_fake_clock_is_seeded():
    def draw(rng):
        return rng.uniform(0, 1000)

    readings = [[FakeClock(draw, seed=s).time_block(noop, 5) for _ in range(3)] for s in (1, 1)]
    assert readings[0] == readings[1]
    assert FakeClock(draw, seed=2).time_block(noop, 5) != readings[0][0]


# --- warmup -----------------------------------------------------------------------------------


def test_warmup_stops_by_time():
    # 1 ms per call, free reads: the 10th call reaches the 10 ms warmup budget.
    m = measure(noop, TimingConfig(warmup_s=0.010), FakeClock(cost_ns=1 * MS))
    assert m.n_warmup_calls == 10
    assert m.warmup_ms == 10.0
    assert m.per_call_estimate_ns == 1 * MS


def test_warmup_is_never_zero_calls():
    m = measure(noop, TimingConfig(warmup_s=0.0), FakeClock(cost_ns=5 * MS))
    assert m.n_warmup_calls == 1
    assert m.warmup_ms == 5.0


def test_warmup_with_overhead_by_hand():
    # Each warmup step: block read (1 us overhead) + 1 ms call + a now() read (1 us) ...
    # now() after call k reads start + k * (1 ms + 3 us): the 10th reaches 10 ms.
    clock = FakeClock(cost_ns=1 * MS, overhead_ns=1000)
    m = measure(noop, TimingConfig(warmup_s=0.010, min_samples=6), clock)
    assert m.n_warmup_calls == 10
    assert m.warmup_ms == pytest.approx(10 * 1.003)
    assert m.clock_overhead_ns == 1000
    assert m.per_call_estimate_ns == 1 * MS  # median reading 1.001 ms, less the overhead


# --- block size -------------------------------------------------------------------------------


def test_block_size_rises_for_cheap_functions_until_overhead_is_under_one_percent():
    # 100 ns calls, 50 ns reads: warmup blocks double 1, 2, ..., 64 (64 * 100 + 50 >= 50 / 1%),
    # the estimate is (6450 - 50) / 64 = 100 ns, and 51 calls make the 50 ns overhead < 1%.
    clock = FakeClock(cost_ns=100, overhead_ns=50)
    m = measure(noop, TimingConfig(warmup_s=0.001, min_samples=6), clock)
    assert m.per_call_estimate_ns == 100
    assert m.block_size == 51
    assert m.samples_ms == (5150 / 51 / MS,) * 6
    assert m.overhead_fraction < 0.01
    assert 50 / (50 * 100) == 0.01  # 50 calls would sit exactly at 1 %, not under it


def test_block_size_is_one_for_expensive_functions():
    clock = FakeClock(cost_ns=2 * MS, overhead_ns=50)
    m = measure(noop, TimingConfig(warmup_s=0.01, min_samples=6), clock)
    assert m.block_size == 1
    assert m.samples_ms == (2.00005,) * 6


@pytest.mark.parametrize(
    ("per_call_ns", "overhead_ns", "expected"),
    [
        (100, 50, 51),
        (1000, 50, 6),
        (5000, 50, 2),
        (6000, 50, 1),
        (10_000, 100, 2),
        (100, 0, 1),
        (0, 40, 4001),
    ],
)
def test_block_size_for(per_call_ns, overhead_ns, expected):
    block = block_size_for(per_call_ns, overhead_ns, 0.01)
    assert block == expected
    if overhead_ns:
        assert overhead_ns < 0.01 * block * max(per_call_ns, 1)


# --- stop rule --------------------------------------------------------------------------------


def test_low_noise_stops_on_ci_after_exactly_min_samples():
    def cost(rng):  # 1 ms +- 0.1 %: ten samples already pin the median to well within 1 %
        return 1 * MS * (1 + 0.001 * rng.gauss(0, 1))

    config = TimingConfig(warmup_s=0.005, min_samples=10, rel_ci=0.01)
    m = measure(noop, config, FakeClock(cost, overhead_ns=100, seed=0))
    assert m.stop_reason == "ci"
    assert m.n_samples == 10
    assert m.stats.ci_rel_halfwidth <= 0.01


def test_ci_stop_waits_until_a_ci_exists():
    # A constant cost has a zero-width CI, but at 95 % the CI needs 6 samples.
    m = measure(noop, TimingConfig(warmup_s=0, min_samples=3), FakeClock(cost_ns=1 * MS))
    assert (m.stop_reason, m.n_samples) == ("ci", 6)


def test_alternating_costs_hit_the_time_cap_exactly():
    # Sampling sees 3, 1, 3, 1, ... ms (the warmup took the first 1 ms); the CI spans [1, 3]
    # forever, and the running total first reaches the 20 ms cap after the 10th sample.
    config = TimingConfig(warmup_s=0, min_samples=2, max_time_s=0.020)
    m = measure(noop, config, FakeClock(cost_ns=[1 * MS, 3 * MS]))
    assert m.stop_reason == "time_cap"
    assert m.samples_ms == (3.0, 1.0) * 5
    assert m.timed_ms == 20.0


def test_very_noisy_function_stops_on_time_cap():
    def cost(rng):
        return 1 * MS * rng.lognormvariate(0, 1.0)

    config = TimingConfig(warmup_s=0.001, max_time_s=0.1, max_samples=10_000)
    m = measure(noop, config, FakeClock(cost, seed=3))
    assert m.stop_reason == "time_cap"
    assert m.block_size == 1  # free reads: no overhead to amortise
    assert sum(m.samples_ms[:-1]) < 100.0 <= sum(m.samples_ms)  # stopped at the first check over
    assert m.stats.ci_rel_halfwidth > 0.01


def test_very_noisy_function_stops_on_max_samples():
    def cost(rng):
        return 1 * MS * rng.lognormvariate(0, 1.0)

    config = TimingConfig(warmup_s=0.001, min_samples=5, max_samples=20, max_time_s=100)
    m = measure(noop, config, FakeClock(cost, seed=3))
    assert (m.stop_reason, m.n_samples) == ("max_samples", 20)


def test_measurement_records_what_was_done():
    clock = FakeClock(cost_ns=2 * MS, overhead_ns=10)
    config = TimingConfig(warmup_s=0.004, min_samples=6, confidence=0.9)
    m = measure(noop, config, clock)
    assert (m.mode, m.clock, m.clock_overhead_ns, m.confidence) == ("warm", "fake", 10, 0.9)
    assert clock.n_calls == m.n_warmup_calls + m.n_samples * m.block_size
    assert m.stats == summarize(m.samples_ms, 0.9)  # derived from the raw samples
    assert m.stats is m.stats  # computed once
    assert (m.median_ms, m.iqr_ms) == (m.stats.median_ms, m.stats.iqr_ms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.block_size = 2


def test_same_seed_same_measurement():
    def run():
        clock = FakeClock(lambda rng: rng.gauss(1 * MS, 0.05 * MS), overhead_ns=30, seed=9)
        return measure(noop, TimingConfig(warmup_s=0.003, max_time_s=0.05), clock)

    assert run() == run()


# --- cold mode --------------------------------------------------------------------------------


def test_cold_mode_flushes_before_every_sample_outside_the_timed_region():
    clock = FakeClock(cost_ns=100, overhead_ns=50)  # cheap: warm mode would use block 51
    log = []

    def fn():
        log.append("fn")

    def flush():
        assert not clock.in_block
        log.append("flush")

    config = TimingConfig(warmup_s=0.001, min_samples=8, mode="cold")
    m = measure(fn, config, clock, flush=flush)
    assert m.mode == "cold"
    assert m.block_size == 1
    assert m.n_samples == 8
    assert log[m.n_warmup_calls :] == ["flush", "fn"] * 8
    assert "flush" not in log[: m.n_warmup_calls]
    assert m.overhead_fraction == pytest.approx(50 / 150)  # the recorded price of block 1


def test_flush_is_required_in_cold_mode_and_refused_in_warm_mode():
    with pytest.raises(ValueError, match="cold mode needs"):
        measure(noop, TimingConfig(mode="cold"), FakeClock(1))
    with pytest.raises(ValueError, match="only used in cold mode"):
        measure(noop, TimingConfig(), FakeClock(1), flush=noop)


# --- config validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("warmup_s", -1.0),
        ("min_samples", 0),
        ("max_samples", 5),
        ("max_time_s", 0.0),
        ("rel_ci", 0.0),
        ("confidence", 1.0),
        ("max_overhead", 0.0),
        ("mode", "lukewarm"),
    ],
)
def test_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=rf"TimingConfig\.{field}: .*{value!r}"):
        TimingConfig(**{field: value})


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


# --- cache flush ------------------------------------------------------------------------------


def write_cache(root, index, level, kind, size):
    d = root / f"index{index}"
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_cpu_llc_from_sysfs(tmp_path):
    write_cache(tmp_path, 0, 1, "Data", "32K")
    write_cache(tmp_path, 1, 1, "Instruction", "32K")
    write_cache(tmp_path, 2, 2, "Unified", "1024K")
    write_cache(tmp_path, 3, 3, "Unified", "32768K")
    assert timing.cpu_llc_bytes(tmp_path) == 32 * 2**20
    assert timing.cpu_llc_bytes(tmp_path / "missing") is None


@pytest.mark.parametrize(("text", "size"), [("32K", 32768), ("8M", 8 * 2**20), ("4096", 4096)])
def test_parse_cache_size(text, size):
    assert timing._parse_cache_size(text) == size


def test_cpu_flush_size_is_twice_the_llc_or_the_fallback(monkeypatch):
    monkeypatch.setattr(timing, "cpu_llc_bytes", lambda: 3 * 2**20)
    assert flush_size_bytes("cpu") == 6 * 2**20
    monkeypatch.setattr(timing, "cpu_llc_bytes", lambda: None)
    assert flush_size_bytes("cpu") == 2 * timing.DEFAULT_CPU_LLC_BYTES


def test_cpu_flush_writes_its_buffer(monkeypatch):
    monkeypatch.setattr(timing, "cpu_llc_bytes", lambda: 4096)
    flush = make_flush("cpu")
    assert isinstance(flush, CacheFlush)
    assert (flush.device, flush.size_bytes, flush.buffer.numel()) == ("cpu", 8192, 8192)
    flush()
    flush()
    assert bool((flush.buffer == 2).all())


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
    expected = expected or 2 * timing.DEFAULT_GPU_L2_BYTES
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
    assert flush.size_bytes == 2 * (l2 or timing.DEFAULT_GPU_L2_BYTES)
    config = TimingConfig(warmup_s=0.01, max_time_s=0.2, mode="cold")
    m = measure(lambda: x @ x, config, clock_for("cuda"), flush=flush)
    assert m.clock == "cuda_event" and m.block_size == 1
    assert m.n_samples >= 1 and all(s > 0 for s in m.samples_ms)
    assert not math.isnan(m.median_ms)
