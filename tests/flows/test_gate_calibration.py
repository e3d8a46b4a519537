"""`convbench calibrate --gate`: A/A pairs and pairs with torch slowed, counted per outcome."""

from __future__ import annotations

import functools

import pytest

from convbench.cli import main
from convbench.flows import gate_calibration as mod
from convbench.measure.options import measure_options
from convbench.store.frames import load


def test_pairs_of_runs_counted_per_outcome(tiny_suite, tmp_path, monkeypatch, warm_workers):
    # short timing (the defaults' 1 s cap per task would test nothing more), warm workers
    short = measure_options(max_time_s=0.2, warmup_s=0.01, min_samples=10)
    monkeypatch.setattr(mod, "RunPlan", functools.partial(mod.RunPlan, options=short))
    seen = []
    db = tmp_path / "gate.sqlite"
    cal = mod.calibrate_gate(
        str(db), str(tiny_suite), pairs=1, threads=1, conditions=("quiet",),
        on_run=lambda condition, i: seen.append((condition, i)),
    )  # fmt: skip
    assert seen == [("quiet", 0), ("quiet", 1)] and len(cal.runs["quiet"]) == 2
    frame = load(db, cal.runs["quiet"][0])
    assert sorted(set(frame.backend)) == sorted([*mod.MEASURED, *mod.SLOWED.values()])
    assert set(frame.direction) == {"forward"}
    n_cases = frame.case.nunique()
    assert [t.injected for t in cal.tallies] == [0, 5, 10, 20]
    aa = cal.tally("quiet", 0)
    assert aa.n == n_cases * len(set(frame.backend))  # every backend against itself
    for percent in (10, 20):
        found = cal.tally("quiet", percent)
        assert found.n == n_cases and found.outcomes["pass"] == 0  # torch +p% never passes
    assert cal.tally("quiet", 20).outcomes["regression"] >= 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pairs", "0"], "--pairs: expected at least 1, got 0"),
        (["--conditions", "quiet,noisy"], "--conditions: unknown 'noisy'"),
    ],
)
def test_bad_flags_are_refused_in_one_line(flags, message, capsys):
    assert main(["calibrate", "--gate", *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_threshold_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["calibrate", "--gate", "--threshold", "lots"])
    assert info.value.code == 2
    assert "expected a percentage such as 5%, got 'lots'" in capsys.readouterr().err


def tallies(false_alarms, detected, missed, n=300, m=60):
    aa = {"regression": false_alarms, "pass": n - false_alarms, "inconclusive": 0}
    hit = {"regression": detected, "pass": missed, "inconclusive": m - detected - missed}
    return [mod.Tally("quiet", 0, aa), mod.Tally("quiet", mod.DETECT, hit)]


@pytest.mark.parametrize(
    ("false_alarms", "detected", "missed", "meets"),
    [(3, 54, 0, True), (4, 60, 0, False), (0, 53, 0, False), (0, 59, 1, False)],
)
def test_a_threshold_is_recommended_only_with_few_false_alarms_and_no_miss(
    false_alarms, detected, missed, meets
):
    assert mod.GateCalibration.meets(tallies(false_alarms, detected, missed)) is meets


def test_an_injected_pair_keeps_the_other_backends_as_anchors():
    """torch +10%: the later run's torch_slowed10 stands in for torch; the earlier run's
    torch stays torch; every other backend stays itself in both, to anchor them."""
    import pandas as pd

    def run(run_id):
        rows = [dict(case="c", dtype="float32", device="cpu", direction="forward",
                     layout="contiguous", backend=b, run_id=run_id, median_ms=1.0)
                for b in [*mod.MEASURED, *mod.SLOWED.values()]]  # fmt: skip
        return pd.DataFrame(rows).assign(median_ms=lambda f: f.index + 1.0)

    old, new = mod._injected(run("a"), run("b"), 10)
    assert sorted(old.backend) == sorted(new.backend) == [
        "onednn", "torch", "torch_slowed20", "torch_slowed5",
    ]  # fmt: skip
    assert old.set_index("backend").median_ms["torch"] == 2.0  # the earlier run's own torch
    assert new.set_index("backend").median_ms["torch"] == 4.0  # the later run's slowed10
    assert old.result_key.str.endswith("/torch").sum() == 1
