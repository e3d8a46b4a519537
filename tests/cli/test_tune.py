"""`convbench tune` end to end on a small model, in a subprocess with test-only backends."""

from __future__ import annotations

import json
import textwrap

import pytest

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

FAST = ["--threads", "1", "--max-time", "0.05", "--e2e-time", "0.3", "--quiet"]


@pytest.fixture
def workdir(tmp_path, plugin_env):
    (tmp_path / "cbmodels.py").write_text(textwrap.dedent(MODELS))
    return tmp_path, plugin_env


def test_tune_refuses_the_fast_wrong_backend_and_reuses_its_run(workdir, run_cli):
    tmp, env = workdir
    args = ["tune", "cbmodels:tiny", "--input-shape", "2,3,16,16", "--db", "t.sqlite"]
    args += ["--backends", "wrong,im2col,torch", "--out", "tiny.json", "--report", *FAST]
    proc = run_cli(args, env=env, cwd=tmp)
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
    assert "(kept)" in proc.stdout and "layout: " in proc.stderr
    layers = {tuple(e["layers"]) for e in document["decisions"]}
    assert layers == {("conv1@0",), ("conv2@2", "conv3@4"), ("conv4@5",)}
    report = proc.stdout.split("report: ")[1].split()[0]
    html = (tmp / report).read_text()
    assert "Tuned model" in html and "cbmodels:tiny" in html and "channels_last" in html
    again = run_cli(args, env=env, cwd=tmp)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "measured before; measuring only what is missing" in again.stderr


def test_tune_training_decides_every_pass(workdir, run_cli):
    tmp, env = workdir
    args = ["tune", "cbmodels:tiny", "--input-shape", "2,3,16,16", "--db", "t.sqlite", "--train"]
    args += ["--backends", "winograd,torch", "--out", "tiny.json", *FAST]
    proc = run_cli(args, env=env, cwd=tmp)
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
def test_bad_models_are_one_line_errors(workdir, run_cli, factory, message):
    tmp, env = workdir
    proc = run_cli(["tune", factory, "--input-shape", "2,12", "--db", "t.sqlite"], env=env, cwd=tmp)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
