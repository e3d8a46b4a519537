"""`convbench tune` end to end on a small model, with test-only backends (in this process; a
folder shadowing the package in a subprocess); its tables and closing lines as printed."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from convbench.cli import main
from convbench.cli.tune import NOTE, e2e_tables, flagged_line, layer_tables, notes
from convbench.measure.endtoend import EndToEnd

MODELS = """
import torch
from torch import nn


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 8, 1),
    )


def no_convs():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
"""

# the compiled variants are tested on their own (tests/runner/test_build.py)
FAST = ["--threads", "1", "--max-time", "0.05", "--e2e-time", "0.3", "--quiet", "--no-compile"]


@pytest.fixture
def workdir(tmp_path, plugin_env):
    (tmp_path / "cbmodels.py").write_text(textwrap.dedent(MODELS))
    return tmp_path, plugin_env


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def tune_here(tmp_path, monkeypatch, capsys, plugins, warm_workers):
    """`convbench tune ARGS` in this process, run in ``tmp_path`` (which holds cbmodels.py)
    with the test-only backends registered: a `Result` like a subprocess's. What the command
    changes in the process (the current directory on sys.path, torch's threads, the model's
    module) is undone afterwards. The end-to-end process boundaries are tested below
    (`test_a_folder_shadowing_the_package_is_a_one_line_error`) and in tests/cli/test_run.py."""
    (tmp_path / "cbmodels.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    threads = torch.get_num_threads()

    def tune(args):
        capsys.readouterr()
        code = main(["tune", *args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield tmp_path, tune
    torch.set_num_threads(threads)
    sys.modules.pop("cbmodels", None)


def test_tune_refuses_the_fast_wrong_backend_and_reuses_its_run(tune_here):
    tmp, run = tune_here
    args = ["cbmodels:tiny", "--input-shape", "2,3,16,16", "--db", "t.sqlite"]
    args += ["--backends", "wrong,im2col,torch", "--out", "tiny.json", "--report", *FAST]
    proc = run(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "decisions per layer and pass" in proc.stdout
    assert "the whole model, end to end" in proc.stdout and "inference" in proc.stdout
    document = json.loads((tmp / "tiny.json").read_text())
    backends = {e["backend"] for e in document["decisions"]}
    assert "wrong" not in backends and backends <= {"im2col", "torch"}
    layout = document["layout"]  # the whole model's memory format, chosen end to end
    assert layout["memory_format"] in ("contiguous", "channels_last") and layout["reason"]
    variants = {v["variant"] for v in layout["variants"]}
    assert {"tuned", "tuned, channels_last"} <= variants
    assert "layout: " in proc.stderr
    if layout.get("flags"):  # a busy host, every attempt flagged: the model as it was
        assert "(flagged)" in proc.stdout and layout["memory_format"] == "contiguous"
        assert backends == {"torch"} and "rerun on a quieter host" in proc.stderr
    else:  # clean at once, or on an attempt after a flagged one (timed again)
        assert "(kept)" in proc.stdout
    layers = {tuple(e["layers"]) for e in document["decisions"]}
    assert layers == {("conv1@0",), ("conv2@2", "conv3@4"), ("conv4@5",)}
    # the per-layer plan: every call in execution order, in a layout, off "wrong"
    plan = document["plan"]
    assert [s["layer"] for s in plan["layers"]] == ["conv1@0", "conv2@2", "conv3@4", "conv4@5"]
    assert {s["backend"] for s in plan["layers"]} <= {"im2col", "torch"}
    assert {s["layout"] for s in plan["layers"]} <= {"contiguous", "channels_last"}
    assert plan["plan_ms"] == pytest.approx(plan["conv_ms"] + plan["convert_ms"] + plan["join_ms"])
    # the prediction: the planned layers replayed in execution order, each timed
    assert all(s["replay_ms"] > 0 for s in plan["layers"])
    assert plan["predicted_ms"] == pytest.approx(sum(s["replay_ms"] for s in plan["layers"]))
    assert "per-layer plan: " in proc.stderr and "measured apart" in proc.stderr
    assert "predicted convolution time" in proc.stderr and "replayed" in proc.stderr
    from convbench import results

    measured = results.load(tmp / "t.sqlite")
    assert set(measured.layout) == {"contiguous", "channels_last"}  # both, for the plan
    report = proc.stdout.split("report: ")[1].split()[0]
    html = (tmp / report).read_text()
    assert "Tuned model" in html and "cbmodels:tiny" in html and "channels_last" in html
    assert "Per-layer plan" in html and "Predicted convolution time" in html
    assert "the original's convolutions take" in proc.stderr  # the headroom line
    again = run(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "measured before; measuring only what is missing" in again.stderr


def test_tune_training_decides_every_pass(tune_here):
    tmp, run = tune_here
    args = ["cbmodels:tiny", "--input-shape", "2,3,16,16", "--db", "t.sqlite", "--train"]
    args += ["--backends", "winograd,torch", "--out", "tiny.json", *FAST]
    proc = run(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    passes = {e["pass"] for e in json.loads((tmp / "tiny.json").read_text())["decisions"]}
    assert passes == {"forward", "backward_data", "backward_weight"}
    assert "train" in proc.stdout


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("cbmodels:nothing", "has no attribute 'nothing'"),
        ("nomodule:tiny", "cannot import module 'nomodule'"),
        ("cbmodels:no_convs", "ran no nn.Conv1d/nn.Conv2d layer"),
    ],
)
def test_bad_models_are_one_line_errors(tune_here, factory, message):
    _, run = tune_here
    proc = run([factory, "--input-shape", "2,12", "--db", "t.sqlite"])
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--max-pace", "0"], "--max-pace: expected a number > 0, got 0.0"),
        (["--e2e-attempts", "0"], "--e2e-attempts: expected a count >= 1, got 0"),
        (["--e2e-time", "0"], "--max-time, --e2e-time: expected seconds > 0"),
    ],
)
def test_bad_values_are_one_line_errors_before_anything_runs(capsys, flag, message):
    from convbench.cli import main

    assert main(["tune", "examples.models:vgg16", "--input-shape", "1,3,32,32", *flag]) == 2
    assert capsys.readouterr().err == f"convbench: error: {message}\n"


def _shadows(folder) -> bool:
    """Would a plain folder named convbench in ``folder`` shadow this package in a fresh
    interpreter? (With an editable install, yes; a regular one in site-packages wins.)"""
    site = [p for p in sys.path if "-packages" in p]
    spec = importlib.machinery.PathFinder.find_spec("convbench", [str(folder), *site])
    return spec is not None and spec.origin is None


@pytest.mark.parametrize("where", ["PYTHONPATH", "current directory"])
def test_a_folder_shadowing_the_package_is_a_one_line_error(workdir, run_cli, where):
    tmp, env = workdir
    folder = tmp / "shadow" if where == "PYTHONPATH" else tmp
    (folder / "convbench").mkdir(parents=True)
    if not _shadows(folder):
        pytest.skip("convbench is installed as a regular package: a folder does not shadow it")
    if where == "PYTHONPATH":
        env = dict(env, PYTHONPATH=f"{folder}:{env['PYTHONPATH']}")
    args = ["tune", "cbmodels:tiny", "--input-shape", "2,3,16,16", "--db", "t.sqlite"]
    proc = run_cli(args, env=env, cwd=tmp)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert f"{folder / 'convbench'} shadows the convbench package" in proc.stderr


def test_the_printed_tables_keep_their_units(capsys, monkeypatch):
    from convbench.report.terminal import print_tables

    monkeypatch.setenv("COLUMNS", "200")
    entry = {"pass": "forward", "backend": "im2col", "torch_ms": 1.2, "median_ms": 0.9}
    entry.update(layers=["conv1@0"], speedup=1.33, speedup_ci=[1.2, 1.4], rel_err=1e-6)
    result = EndToEnd("inference", 10.0, 8.0, 1.25, 1.2, 1.3, 1e-4, 0.0, 20, "tuned")
    flagged = EndToEnd("inference", 10.0, 8.0, 1.25, 1.2, 1.3, 1e-4, 0.0, 20, "tuned, x",
                       flags=("original: off pace: …",))  # fmt: skip
    compiled = EndToEnd("inference", 10.0, 7.0, 1.43, 1.4, 1.5, 1e-4, 0.0, 20,
                        "torch.compile(original)", compile_s=31.46,
                        vs_compiled=(1.0, 0.98, 1.02))  # fmt: skip
    marks = [{"variant": "tuned", "chosen": True}, {"variant": "tuned, x", "chosen": False},
             {"variant": "torch.compile(original)", "chosen": False}]  # fmt: skip
    records = [
        dict(r.to_dict(), **m) for r, m in zip([result, flagged, compiled], marks, strict=True)
    ]
    tables = layer_tables([entry]) + e2e_tables(records)
    print_tables(tables, "table", NOTE)
    out = capsys.readouterr().out
    headers = ("torch [ms]", "chosen [ms]", "saved [ms]", "original [ms]", "optimized [ms]")
    for header in (*headers, "compile [s]"):
        assert header in out
    assert "torch.compile(original)" in out and " 31.5 " in out
    assert "vs torch.compile [95% CI]" in out and "1.000× [0.980–1.020]" in out
    assert "\\[" not in out and "tuned (kept)" in out and "tuned, x (flagged)" in out
    assert "decisions per layer and pass · forward" in out  # one pass: in the title


def test_the_closing_line_names_the_flagged_results_and_what_to_do():
    flagged = [
        dict(
            case=f"conv{i}",
            backend="torch",
            direction="forward",
            reason="disturbed: 5 of 9 samples …; off pace: the host ran …",
        )  # fmt: skip
        for i in range(7)
    ]
    line = flagged_line(flagged)
    assert line.startswith("convbench: 7 per-layer result(s) the decisions rest on were flagged")
    assert "conv0 torch forward (disturbed, off pace)" in line and "and 2 more" in line
    assert "conv5" not in line and "--db NEW.sqlite" in line and "\n" not in line


def test_tune_notes_each_warning_once_without_pytorchs_own_deprecations():
    inside_torch = str(Path(torch.__file__).parent / "jit" / "_script.py")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            warnings.warn_explicit(
                "script_method is deprecated", DeprecationWarning, inside_torch, 1
            )
            warnings.warn("layer 'conv1@0' falls back to torch", UserWarning, stacklevel=1)
        warnings.warn_explicit("a deprecation of the user's own", DeprecationWarning, "user.py", 1)
    assert notes(caught) == [
        "layer 'conv1@0' falls back to torch",
        "a deprecation of the user's own",
    ]
