"""convbench.measure.engine: the timing engine's decisions, asserted exactly with a seeded
FakeClock."""

import dataclasses

import pytest

from convbench.analysis.stats import summarize
from convbench.measure.clocks import FakeClock, measure_overhead
from convbench.measure.config import TimingConfig
from convbench.measure.engine import (
    block_size_for,
    measure,
    measure_interleaved,
    per_round_cap,
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


def test_floor_samples_keep_a_slow_function_past_the_cap():
    # 400 ms per call under a 1 s cap: 3 samples alone, 6 with the floor (a decision's test
    # needs them); the floor gives up at 10 × the cap.
    slow = FakeClock(cost_ns=400 * MS)
    assert measure(noop, TimingConfig(warmup_s=0, min_samples=10), slow).n_samples == 3
    config = TimingConfig(warmup_s=0, min_samples=10, floor_samples=6)
    m = measure(noop, config, FakeClock(cost_ns=400 * MS))
    assert (m.stop_reason, m.n_samples) == ("time_cap", 6)
    config = TimingConfig(warmup_s=0, min_samples=50, floor_samples=40)
    m = measure(noop, config, FakeClock(cost_ns=400 * MS))
    assert (m.stop_reason, m.n_samples) == ("time_cap", 25)  # 25 × 0.4 s = 10 × the cap


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


# --- disturbed samples and interleaved rounds --------------------------------------------------


def test_disturbed_samples_are_kept_apart_and_sampling_goes_on():
    from convbench.measure.disturbance import FakeProbe

    # every third sample is disturbed and 3x slower; the stats must never see one (block size
    # 1 without clock overhead; the one warmup call takes cost 0, sample k cost k + 1)
    costs = [3 * MS if (j % 3 == 0 and j > 0) else MS for j in range(3000)]
    clock = FakeClock(costs)
    probe = FakeProbe([0.0, 0.0, 0.4])
    config = TimingConfig(warmup_s=0, min_samples=10, max_time_s=1.0, rel_ci=0.01)
    m = measure(noop, config, clock, probe=probe)
    assert m.probe == "fake" and not m.disturbed
    assert m.n_samples == 10 and m.n_discarded >= 4
    assert set(m.samples_ms) == {1.0} and set(m.discarded_ms) == {3.0}
    assert m.median_ms == 1.0


def test_too_few_clean_samples_are_flagged_not_hidden():
    from convbench.measure.disturbance import FakeProbe

    clock = FakeClock(2 * MS)
    config = TimingConfig(warmup_s=0, min_samples=10, max_time_s=0.05)
    m = measure(noop, config, clock, probe=FakeProbe([0.5]))  # always disturbed
    assert m.disturbed and m.n_discarded > 0
    assert m.n_samples > 0 and m.median_ms == 2.0  # the disturbed ones are all there is


def test_interleaved_functions_take_turns_in_bursts():
    """Each turn: two untimed re-warm calls, then about ``round_s`` of samples (5 × 1 ms);
    the order of turns is shuffled per round; a round's samples share its index."""
    log = []
    clock = FakeClock(MS)
    fns = [lambda: log.append("a"), lambda: log.append("b")]
    config = TimingConfig(warmup_s=0, min_samples=6, max_time_s=1.0, round_s=0.005)
    a, b = measure_interleaved(fns, config, clock)
    assert a.stop_reason == b.stop_reason == "ci"  # constant cost: narrow at once
    # min_rounds: several samples a turn, so 20 turns however narrow the CI was sooner
    assert a.rounds == b.rounds == tuple(r for r in range(20) for _ in range(5))
    turns = "".join(log[2:])  # after each function's single warmup call
    runs = [turns[i : i + 7] for i in range(0, len(turns), 7)]
    assert all(len(set(run)) == 1 and len(run) == 7 for run in runs)
    order = ["".join(run[0] for run in runs[i : i + 2]) for i in range(0, len(runs), 2)]
    assert set(order) <= {"ab", "ba"}


def test_a_function_leaves_the_rotation_when_its_ci_is_narrow():
    import random

    rng = random.Random(1)
    log = []

    def cost(_):
        return MS if log[-1] == "a" else rng.uniform(1, 3) * MS

    clock = FakeClock(cost)
    fns = [lambda: log.append("a"), lambda: log.append("b")]
    config = TimingConfig(warmup_s=0, min_samples=6, max_time_s=0.5, rel_ci=0.01, min_rounds=3)
    a, b = measure_interleaved(fns, config, clock)
    assert a.stop_reason == "ci" and max(a.rounds) == 2  # three rounds, then done
    assert b.stop_reason in ("time_cap", "max_samples") and max(b.rounds) > 2
    # each function had its own time budget: b's noise did not stop a, a did not eat b's
    assert b.n_samples * 2 >= 0.5 * 1e3 * 0.8 / 2


def test_a_slow_function_meets_its_own_time_cap():
    log = []
    clock = FakeClock(lambda _: 200 * MS if log[-1] == "slow" else MS)
    fns = [lambda: log.append("fast"), lambda: log.append("slow")]
    config = TimingConfig(warmup_s=0, min_samples=10, max_time_s=0.5)
    fast, slow = measure_interleaved(fns, config, clock)
    assert fast.stop_reason == "ci" and fast.n_samples >= 10
    assert slow.stop_reason == "time_cap" and slow.n_samples == 3  # 3 × 200 ms > 0.5 s
    assert slow.rounds == (0, 1, 2)  # one sample per turn when a sample outlasts round_s


def test_a_fast_kernel_samples_over_min_rounds_turns_within_max_samples():
    """0.01 ms calls would fill a 5 ms turn with 500 samples, and `max_samples` (1000) after
    two turns: a turn holds at most max_samples // min_rounds samples, so the measurement
    spans min_rounds turns."""
    clock = FakeClock(MS // 100)
    config = TimingConfig(warmup_s=0, max_time_s=1.0)
    a, b = measure_interleaved([noop, noop], config, clock)
    assert per_round_cap(config) == 50
    assert a.stop_reason == b.stop_reason == "ci"
    assert len(set(a.rounds)) == config.min_rounds == 20
    assert max(a.rounds.count(r) for r in set(a.rounds)) <= 50


def test_min_rounds_does_not_hold_a_call_that_fills_its_turn():
    """One sample per turn (a call longer than round_s): the turns are the samples, and
    min_samples, not min_rounds, says when enough were taken."""
    clock = FakeClock(10 * MS)
    config = TimingConfig(warmup_s=0, min_samples=10, max_time_s=5.0)
    a, b = measure_interleaved([noop, noop], config, clock)
    assert a.stop_reason == b.stop_reason == "ci"
    assert a.n_samples == 10 and a.rounds == tuple(range(10))
