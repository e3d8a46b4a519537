"""The notebook API (`convbench.run` and friends) and `python -m convbench`."""

from __future__ import annotations

import subprocess
import sys

import pytest

import convbench
from convbench import results
from convbench.cli import build_parser
from convbench.cli.run import _plan
from convbench.errors import UserError
from convbench.flows import api
from convbench.measure.config import TimingConfig
from convbench.measure.options import MeasureOptions, measure_options
from convbench.problem import Axes, ConvCase, ConvProblem, Suite

TINY = dict(max_time=0.05, warmup=0.01, min_samples=6)


def tiny_suite() -> Suite:
    cases = (
        ConvCase("a", ConvProblem(1, 2, 4, (6, 6), (3, 3), padding=1), count=3),
        ConvCase("b", ConvProblem(1, 2, 2, (16,), (3,)), count=1),
    )
    return Suite("tiny-api", "", "", None, cases, Axes())


def test_run_returns_the_results_frame_in_memory_and_in_a_store(tmp_path, warm_workers):
    df = convbench.run(tiny_suite(), backends=["naive", "im2col"], **TINY)
    assert len(df) == 4 and set(df.status) == {"ok"}
    assert {"case", "backend", "median_ms", "rel_err", "gflops", "count"} <= set(df.columns)
    assert df.set_index(["case", "backend"]).loc[("a", "naive"), "count"] == 3
    assert df.attrs["interrupted"] is False and df.attrs["run_id"] == df.run_id.iloc[0]

    db = tmp_path / "r.sqlite"
    df2 = convbench.run(
        "smoke", backends=["im2col"], directions=["forward"], batch_sizes=[1], db=db, **TINY
    )
    assert len(df2) == 6 and set(df2.case.str.endswith("@n1")) == {True}
    stored = results.load(db, df2.attrs["run_id"])
    assert sorted(stored.result_key) == sorted(df2.result_key)
    run = results.runs(db).iloc[0]
    assert (run.suite, run.status) == ("smoke", "finished")


def test_run_rejects_bad_arguments_like_the_cli():
    with pytest.raises(UserError, match="unknown backend 'nope'"):
        convbench.run(tiny_suite(), backends=["nope"])
    with pytest.raises(UserError, match="no suite of that name"):
        convbench.run("no-such-suite")
    with pytest.raises(UserError, match="threads"):
        convbench.run(tiny_suite(), threads=0)
    with pytest.raises(UserError, match="mode"):
        convbench.run(tiny_suite(), mode="lukewarm")


def test_measure_options_match_the_cli_flags():
    args = build_parser().parse_args(["run", "smoke"])
    assert measure_options() == _plan(args).options == MeasureOptions()
    assert api.DEFAULTS == {
        "warmup_s": args.warmup,
        "min_samples": args.min_samples,
        "max_time_s": args.max_time,
        "rel_ci": args.rel_ci,
        "mode": args.mode,
        "max_lost": args.max_lost,
        "max_pace": args.max_pace,
        "interleave": args.interleave,
        "cuda_timing": args.cuda_timing,
        "cold_inputs": args.cold_inputs,
    }
    assert (TimingConfig.warmup_s, TimingConfig.max_time_s) == (args.warmup, args.max_time)
    args = build_parser().parse_args(["run", "smoke", "--max-time", "0.3", "--mode", "cold"])
    assert measure_options(max_time_s=0.3, mode="cold") == _plan(args).options
    args = build_parser().parse_args(["run", "smoke", "--no-interleave", "--max-lost", "0.1"])
    assert measure_options(interleave=False, max_lost=0.1) == _plan(args).options
    args = build_parser().parse_args(["run", "smoke", "--max-pace", "0.2"])
    assert measure_options(max_pace=0.2) == _plan(args).options
    assert _plan(args).options.timing.max_pace == 0.2
    args = build_parser().parse_args(
        ["run", "smoke", "--cuda-timing", "graph", "--cold-inputs", "rotate"]
    )
    got = measure_options(cuda_timing="graph", cold_inputs="rotate")
    assert got == _plan(args).options
    with pytest.raises(UserError, match="^cuda_timing: expected events, graph or blocking"):
        convbench.run("smoke", cuda_timing="cupti")
    with pytest.raises(TypeError, match="convbench.run: unknown keyword 'max_times'"):
        convbench.run("smoke", max_times=1)


def test_bad_timing_arguments_name_the_keyword(tiny_suite):
    with pytest.raises(UserError, match=r"^max_time: expected a number > 0, got -1"):
        convbench.run(tiny_suite, max_time=-1)
    with pytest.raises(UserError, match=r"^max_lost: expected"):
        convbench.run(tiny_suite, max_lost=0)


def test_import_convbench_stays_light_and_exports_the_notebook_api():
    code = (
        "import sys, convbench; "
        "assert 'pandas' not in sys.modules and 'torch' not in sys.modules; "
        "assert 'convbench.flows.api' not in sys.modules; "
        "assert convbench.results.load and convbench.run.__module__ == 'convbench.flows.api'; "
        "assert convbench.analysis.modeltime.model_totals and convbench.suite_from_model; "
        "from convbench import run, results"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_python_dash_m_convbench_works_like_the_command():
    proc = subprocess.run(
        [sys.executable, "-m", "convbench", "backends"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "im2col" in proc.stdout and "winograd" in proc.stdout
