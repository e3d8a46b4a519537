"""Disturbance probes: which samples another process took the CPU from."""

from __future__ import annotations

import os
import time

import pytest

from convbench.measure.disturbance import (
    CpuTimeProbe,
    FakeProbe,
    SchedstatProbe,
    cpu_probe,
    lost_share,
)
from convbench.measure.load import BurstLoad


def _threads(root, values):
    for tid, (run, wait) in values.items():
        (root / str(tid)).mkdir(exist_ok=True)
        (root / str(tid) / "schedstat").write_text(f"{run} {wait} 7\n")


def test_lost_share_is_waiting_over_demand():
    before = [(100, 10), (50, 0), (0, 0)]
    after = [(180, 30), (90, 0), (0, 0)]  # ran 80 + 40, waited 20 + 0; the third was idle
    assert lost_share(before, after) == pytest.approx(20 / 140)
    assert lost_share(after, after) == 0.0  # nothing ran: nothing lost
    assert lost_share([(5, 5)], [(0, 0)]) == 0.0  # a thread that ended counts as idle


def test_schedstat_probe_reads_every_thread(tmp_path):
    _threads(tmp_path, {11: (1000, 0), 12: (500, 100)})
    assert SchedstatProbe.available(tmp_path)
    probe = SchedstatProbe(tmp_path)
    probe.start()
    assert probe.threads == 2 and probe.name == "schedstat"
    before = probe.read()
    _threads(tmp_path, {11: (1900, 300), 12: (800, 100)})
    after = probe.read()
    assert probe.lost(before, after, 10_000) == pytest.approx(300 / (900 + 300 + 300))
    assert probe.cpu_ns(before, after) >= 0  # the process CPU clock, exact
    probe.close()
    assert not SchedstatProbe.available(tmp_path / "missing")


def test_cpu_time_probe_compares_with_the_best_ratio_seen():
    probe = CpuTimeProbe()
    probe.start()
    assert probe.lost(0, 2_000, 1_000) == 0.0  # two threads busy: the best so far
    assert probe.lost(0, 1_000, 1_000) == pytest.approx(0.5)  # half the CPU went elsewhere
    assert probe.cpu_ns(10, 25) == 15


def test_fake_probe_scripts_losses():
    probe = FakeProbe([0.0, 0.5])
    assert [probe.lost(None, None, 1) for _ in range(3)] == [0.0, 0.5, 0.0]


def test_this_machine_has_a_probe():
    assert cpu_probe().name in ("schedstat", "cpu_time")


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.skipif(not SchedstatProbe.available(), reason="needs /proc/self/task/*/schedstat")
def test_a_neighbour_on_our_core_is_seen():
    """A busy process sharing our one CPU takes about half of it, and the probe says so."""
    import psutil

    cpus = sorted(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    probe = SchedstatProbe()
    try:
        os.sched_setaffinity(0, {cpus[0]})
        probe.start()
        with BurstLoad(busy_s=(10.0, 10.0), idle_s=(0.0, 0.0), pin=cpus[0]) as load:
            assert load.running()
            neighbour = psutil.Process(load.procs[0].pid)
            deadline = time.monotonic() + 60
            while neighbour.cpu_times().user < 0.05:  # its interpreter is up and spinning
                assert time.monotonic() < deadline
                time.sleep(0.01)
            before = probe.read()
            t0 = time.perf_counter_ns()
            _spin(0.3)
            busy = probe.lost(before, probe.read(), time.perf_counter_ns() - t0)
    finally:
        os.sched_setaffinity(0, old)
        probe.close()
    assert busy > 0.2, busy  # fair share: ~0.5


def test_burst_load_starts_and_stops():
    load = BurstLoad(seed=3)
    assert "1 core busy in random 20–200 ms bursts" in load.describe()
    with load:
        assert load.running() and len(load.procs) == 1
        procs = list(load.procs)
    assert not load.running() and all(p.poll() is not None for p in procs)
    with pytest.raises(ValueError, match="cores"):
        BurstLoad(cores=0)
