"""Host pace (`convbench.measure.pace`): the reference kernel's readings, the baseline, and
the engine's off-pace flag, with scripted readings on a fake clock."""

from __future__ import annotations

import pytest

from convbench.measure.clocks import FakeClock
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure, measure_interleaved
from convbench.measure.pace import MIN_READINGS, PaceReference, pace_of

MS = 1_000_000


def noop():
    return None


class ScriptedPace:
    """What the engine needs of a `PaceReference`: ``take()`` and ``baseline_ns``."""

    def __init__(self, readings, baseline_ns=1000.0):
        self.readings, self.baseline_ns, self.taken = list(readings), baseline_ns, 0

    def take(self) -> int:
        value = self.readings[min(self.taken, len(self.readings) - 1)]
        self.taken += 1
        return value


def test_the_baseline_is_the_median_of_every_reading():
    ticks = iter(range(0, 10**9, 7))  # each reading: two timer calls 7 ns apart -> 3 ns
    ref = PaceReference(seed_readings=4, timer=lambda: next(ticks))
    assert ref.baseline_ns == 3.0  # (7 // 2) for the seeds
    for value in (10, 10, 10, 10, 10):
        ref.record(value)
    assert ref.baseline_ns == 10.0  # 5 of 9 readings are 10
    ref.record(1)
    assert ref.baseline_ns == pytest.approx((3 + 10) / 2)


def test_the_real_reference_reads_tens_of_microseconds():
    ref = PaceReference(seed_readings=8)
    reading = ref.take()
    assert 1_000 < reading < 50 * MS and ref.baseline_ns > 0


def test_pace_of_needs_enough_readings():
    assert pace_of([1000] * (MIN_READINGS - 1), 1000.0) == (None, None)
    assert pace_of([1000, 1300, 1300, 1400], 1000.0) == (1.3, 1.3)  # median 1300 ns


def test_a_measurement_at_the_usual_pace_is_not_flagged():
    pace = ScriptedPace([1000])
    config = TimingConfig(warmup_s=0, min_samples=10, max_time_s=0.1)
    m = measure_interleaved([noop], config, FakeClock(2 * MS), pace=pace)[0]
    assert m.pace == 1.0 and m.pace_us == 1.0 and not m.off_pace
    # read at most once per round_s (5 ms) of timing: 2 ms samples -> every third round
    assert 0 < pace.taken <= m.n_samples // 2 + 1


def test_a_measurement_while_the_host_ran_slow_is_flagged_off_pace():
    config = TimingConfig(warmup_s=0, min_samples=10, max_time_s=0.1, max_pace=0.10)
    m = measure_interleaved([noop], config, FakeClock(2 * MS), pace=ScriptedPace([1250]))[0]
    assert m.pace == 1.25 and m.off_pace
    fast = measure_interleaved([noop], config, FakeClock(2 * MS), pace=ScriptedPace([800]))[0]
    assert fast.pace == 0.8 and fast.off_pace  # faster than usual: not the usual machine either
    near = measure_interleaved([noop], config, FakeClock(2 * MS), pace=ScriptedPace([1080]))[0]
    assert not near.off_pace


def test_each_turn_gets_a_fresh_reading_when_turns_outlast_round_s():
    # the host slows after the first two readings; each function has 6 turns, so at most
    # 2 of its 6 readings are the fast ones and its median is the slow pace
    log = []
    clock = FakeClock(lambda _: 6 * MS)  # one sample per turn, outlasting round_s
    pace = ScriptedPace([1000, 1000] + [1500] * 100)
    config = TimingConfig(warmup_s=0, min_samples=3, max_time_s=0.05, max_pace=0.1)
    a, b = measure_interleaved(
        [lambda: log.append("a"), lambda: log.append("b")], config, clock, pace=pace
    )
    assert a.pace is not None and b.pace is not None
    assert a.pace == b.pace == 1.5 and a.off_pace and b.off_pace
    assert pace.taken == a.n_samples + b.n_samples  # a reading before each 6 ms turn


def test_a_short_measurement_is_topped_up_with_readings_right_after_it():
    pace = ScriptedPace([1000, 1400, 1400])
    config = TimingConfig(warmup_s=0, min_samples=3, max_time_s=0.1)
    m = measure_interleaved([noop], config, FakeClock(100_000), pace=pace)[0]  # 0.1 ms calls
    assert m.stop_reason == "ci" and pace.taken == MIN_READINGS  # one in-loop, two after
    assert m.pace == 1.4 and m.off_pace


def test_no_pace_reference_no_pace():
    m = measure(noop, TimingConfig(warmup_s=0, min_samples=3), FakeClock(MS))
    assert m.pace is None and m.pace_us is None and not m.off_pace


def test_a_sweep_row_records_its_pace(tiny_suite, warm_workers):
    from convbench.backends import backend_names
    from convbench.problem.files import load_suite
    from convbench.runner.sweep import Execution, Recorder, sweep
    from convbench.store import Store

    tasks = load_suite(str(tiny_suite)).tasks(
        registered=backend_names(), backends=["naive", "im2col"]
    )
    from convbench.measure.options import measure_options

    with Store(None) as store:
        recorder = Recorder(store, "r", "t")
        sweep(tasks, recorder, measure_options(max_time_s=0.05), Execution(threads=1))
        rows = [r for r in store.result_rows("r") if r["status"] == "ok"]
    assert rows and all(r["pace_us"] and r["pace_us"] > 0 for r in rows)
    assert all(0.2 < r["pace"] < 5 for r in rows)
    for r in rows:
        if r["disturbed"] and r["reason"].startswith("off pace"):
            assert abs(r["pace"] - 1) > 0.1


# --- the machine's usual pace, from the store's earlier runs ---------------------------------


def _history(store, node, threads, values, run="old"):
    store.create_run(run, suite="s", suite_path=None, command="c", config={}, env={})
    for i, v in enumerate(values):
        row = {"run_id": run, "result_key": f"k{i}", "status": "ok", "node": node}
        store.add_result(row | {"torch_threads": threads, "pace_us": v})


def test_the_store_knows_the_usual_pace_of_a_node_at_a_thread_count():
    from convbench.store import Store
    from convbench.store.sqlite import MIN_PACE_HISTORY

    with Store(None) as store:
        _history(store, "box", 2, [40.0] * (MIN_PACE_HISTORY - 1))
        assert store.usual_pace_us("box", 2) is None  # too few readings to speak
        _history(store, "box", 2, [50.0] * 2, run="more")
        assert store.usual_pace_us("box", 2) == 40.0
        assert store.usual_pace_us("box", 2, exclude_run="old") is None
        assert store.usual_pace_us("box", 1) is None and store.usual_pace_us("other", 2) is None


def test_the_process_reference_takes_the_usual_pace_when_given():
    from convbench.measure import pace as mod

    ref = mod.reference(55.0)
    assert ref.baseline_ns == 55_000.0
    assert mod.reference(None) is ref and ref.baseline_ns != 55_000.0  # its own readings again


def test_a_run_on_a_machine_far_faster_than_its_history_is_flagged_off_pace(
    tiny_suite, warm_workers
):
    """The store says this node usually reads the reference kernel at 1 s: every result
    of a new run was measured 'faster than usual', and says so."""
    import socket

    import convbench
    from convbench.store import Store
    from convbench.store.sqlite import MIN_PACE_HISTORY

    with Store(None) as store:
        _history(store, socket.gethostname(), 1, [1e6] * MIN_PACE_HISTORY)
        convbench.run(
            str(tiny_suite), backends=["im2col"], db=store, threads=1, max_time=0.05, min_samples=3
        )
        run = store.latest_run_id()
        rows = [r for r in store.result_rows(run) if r["status"] == "ok"]
        config = store.run(run)["config"]
    assert rows and all(r["disturbed"] for r in rows)
    assert all(r["pace"] < 0.01 for r in rows)
    assert all("faster than usual while this was measured" in r["reason"] for r in rows)
    assert config["options"].get("usual_pace_us") is None  # the plan as given; not stored
