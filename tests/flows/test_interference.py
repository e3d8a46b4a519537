"""`convbench calibrate --interference`: quiet, quiet again and under load, per method."""

from __future__ import annotations

from convbench.cli import main
from convbench.flows import interference as mod
from convbench.measure.load import BurstLoad


def test_interference_measures_each_method_in_each_condition(tiny_suite, monkeypatch, warm_workers):
    # the command starts a fresh worker per pass; here the passes share warm ones (the passes
    # and their report are what is tested, not six worker start-ups)
    # every pass with a short timing config (the defaults' 1 s cap, six times over, would
    # test nothing more): the yardstick's time per task follows it
    real = mod.measure_options
    short = dict(max_time_s=0.1, warmup_s=0.01, min_samples=6)
    monkeypatch.setattr(mod, "measure_options", lambda **kw: real(**(short | kw)))
    seen = []
    report = mod.interference(
        str(tiny_suite),
        backends=["naive", "im2col"],
        threads=1,
        load=BurstLoad(busy_s=(0.02, 0.05), idle_s=(0.02, 0.05)),
        methods=("convbench", "torch.utils.benchmark"),
        on_pass=lambda method, condition: seen.append((method, condition)),
    )
    assert seen == [(m, c) for c in mod.CONDITIONS for m in ("convbench", "torch.utils.benchmark")]
    assert report.n_tasks == 2 * 2  # 2 cases, 2 backends
    for key, found in report.passes.items():
        assert len(found.medians) == report.n_tasks, key
        assert all(v > 0 for v in found.medians.values())
    assert report.passes[("convbench", "quiet")].seconds > 0
    a = report.agreement("convbench", "quiet again")
    assert a.n == report.n_tasks and 0 <= a.within_pct <= 100
    r = report.agreement("convbench", "burst load", ratios=True)
    assert r.n == report.n_tasks  # every case has two backends to relate


def test_the_cli_prints_the_table(monkeypatch, capsys):
    from convbench.measure import calibrate as cal

    keys = ["k1", "k2"]
    groups = {k: "case" for k in keys}
    passes = {}
    even, slow = {"k1": 40.0, "k2": 40.0}, {"k1": 60.0, "k2": 40.0}  # k1 loaded: host slow
    for method in mod.METHODS:
        paced = method != "torch.utils.benchmark"
        passes[(method, "quiet")] = mod.Pass(
            {"k1": 1.0, "k2": 2.0}, seconds=1.0, pace_us=even if paced else {}
        )
        passes[(method, "quiet again")] = mod.Pass(
            {"k1": 1.01, "k2": 2.0}, seconds=1.0, pace_us=even if paced else {}
        )
        passes[(method, "burst load")] = mod.Pass(
            {"k1": 1.5, "k2": 2.0}, {"k1"}, seconds=2.0, pace_us=slow if paced else {}
        )
    canned = mod.InterferenceReport("smoke", 2, 2, "1 core busy", passes, groups)
    monkeypatch.setattr(mod, "interference", lambda *a, **k: canned)
    monkeypatch.setattr(
        cal, "calibrate", lambda device: cal.Calibration(device, 2, 200.0, 40.0, (), 0.05)
    )
    assert main(["calibrate", "--interference"]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()]
    lines = [line for line in lines if line.split()[1:2] in (["again"], ["load"])]
    assert len(lines) == 6, out
    again, load = lines[0].split(), lines[1].split()
    assert again[:3] == ["convbench", "again", "100%"]
    assert load[:3] == ["convbench", "load", "50%"] and "1" in load  # k1 flagged
    assert lines[1].split()[3] == "100%"  # the unflagged one agrees
    assert load[-1] == "100%"  # at equal pace k1's 1.5 ms is 1.0 ms: the host explains it
    assert lines[-1].split()[-1] == "—"  # torch.utils.benchmark has no pace readings
    assert "wall time per pass" in out
    assert "host pace per pass (reference kernel, µs; quiet/again/load): convbench " in out
    assert "40.0/40.0/50.0" in out  # each pass's median reading
