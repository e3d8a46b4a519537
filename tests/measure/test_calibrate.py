"""`calibrate`'s arithmetic; the measurement itself is exercised with tiny settings."""

from convbench.measure.calibrate import Calibration, Rung, calibrate
from convbench.measure.config import TimingConfig


def test_smallest_within_requires_every_larger_rung_within():
    rungs = (
        Rung("a", 0.001, 0.0013),  # +30%
        Rung("b", 0.01, 0.0102),  # +2%
        Rung("c", 0.1, 0.112),  # +12%: breaks the run from the top
        Rung("d", 1.0, 1.01),
    )
    cal = Calibration("cpu", 1, 100.0, 50.0, rungs, 0.05)
    assert cal.smallest_within_ms == 1.0
    cal = Calibration("cpu", 1, 100.0, 50.0, rungs[:2] + rungs[3:], 0.05)
    assert cal.smallest_within_ms == 0.01


def test_calibrate_runs_on_cpu():
    cfg = TimingConfig(warmup_s=0.0, max_time_s=0.01, min_samples=3)
    cal = calibrate("cpu", reference_s=0.001, config=cfg)
    assert cal.clock_overhead_ns > 0 and cal.empty_call_ns >= 0
    assert len(cal.rungs) >= 5 and all(r.reference_ms > 0 for r in cal.rungs)
