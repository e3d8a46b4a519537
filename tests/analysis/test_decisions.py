"""convbench.analysis.decisions: the accuracy gate and the significance test against torch."""

from __future__ import annotations

import json

import pandas as pd

from convbench.analysis.decisions import decide
from convbench.problem import ConvProblem

PROBLEM = ConvProblem(2, 4, 8, (8, 8), (3, 3), padding=1)


def rows(row, **medians):
    """One result per backend; a backend given as (median, rel_err) carries its error."""
    out = []
    for backend, value in medians.items():
        median, rel_err = value if isinstance(value, tuple) else (value, 1e-7)
        r = row(case="c1", backend=backend, median=median, rel_err=rel_err)
        r["problem_json"] = json.dumps(PROBLEM.to_dict())
        out.append(r)
    return pd.DataFrame(out)


def test_the_fastest_accurate_significant_backend_wins(row):
    (d,) = decide(rows(row, torch=1.0, winograd=0.5, im2col=0.8))
    assert (d.backend, d.pass_, d.problem) == ("winograd", "forward", PROBLEM.key)
    assert 1.9 < d.speedup < 2.1 and d.speedup_ci[0] < d.speedup < d.speedup_ci[1]
    assert d.torch_ms == 1.0 or abs(d.torch_ms - 1.0) < 0.05


def test_a_fast_but_wrong_backend_never_wins(row):
    (d,) = decide(rows(row, torch=1.0, buggy=(0.1, 0.5), im2col=0.8))
    assert d.backend == "im2col"
    (d,) = decide(rows(row, torch=1.0, buggy=(0.1, 0.5)))
    assert d.backend == "torch" and "significantly faster" in d.reason


def test_max_rel_err_tightens_the_gate(row):
    df = rows(row, torch=1.0, winograd=(0.5, 3e-6))
    assert decide(df)[0].backend == "winograd"
    assert decide(df, max_rel_err=1e-6)[0].backend == "torch"


def test_a_tie_stays_on_torch(row):
    df = rows(row, torch=1.0, im2col=1.0)  # same median, same spread: noise
    (d,) = decide(df)
    assert (d.backend, d.speedup) == ("torch", 1.0)


def test_only_the_single_pass_directions_are_decided(row):
    df = rows(row, torch=1.0, winograd=0.5)
    df = pd.concat([df, df.assign(direction="train"), df.assign(direction="backward_data")])
    assert sorted(d.pass_ for d in decide(df)) == ["backward_data", "forward"]


def test_training_charges_each_pass_its_re_prepare(row):
    """Winograd's pass wins with the weight prepared once (0.5 vs 1.0 ms) but, re-prepared
    after every optimizer step (0.7 ms more), loses the training step: torch stays."""
    df = rows(row, torch=1.0, winograd=0.5, im2col=0.8)
    df["prepare_ms"] = df["backend"].map({"torch": 0.0, "winograd": 0.7, "im2col": 0.0})
    assert decide(df)[0].backend == "winograd"
    (d,) = decide(df, weight_changes=True)
    assert d.backend == "im2col" and abs(d.median_ms - 0.8) < 0.05
    df.loc[df["backend"] == "im2col", "prepare_ms"] = 0.5
    (d,) = decide(df, weight_changes=True)
    assert d.backend == "torch"
