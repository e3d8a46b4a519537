"""The pytest plugin: `conv_benchmark` through pytest-benchmark, its storage and comparison."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BENCH_FILE = """
import torch
import torch.nn.functional as F


def test_forward(conv_benchmark):
    x, w, b = torch.randn(2, 4, 12, 12), torch.randn(8, 4, 3, 3), torch.randn(8)
    y = conv_benchmark(backend="winograd", input=x, weight=w, bias=b, padding=1)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1), rtol=1e-4, atol=1e-4)
    conv_benchmark.extra_info["mine"] = 1


def test_backward(conv_benchmark):
    x, w = torch.randn(2, 4, 32), torch.randn(6, 4, 5)
    gx, gw = conv_benchmark("im2col", x, w, padding="same", direction="backward")
    assert gx.shape == x.shape and gw.shape == w.shape


def test_unsupported_skips(conv_benchmark):
    conv_benchmark("cudnn", torch.randn(1, 2, 8, 8), torch.randn(2, 2, 3, 3))
"""

TINY = ["--benchmark-max-time=0.01", "--benchmark-min-rounds=3", "-p", "no:cacheprovider", "-rs"]


def pytest_in(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_bench.py", "--benchmark-only", *TINY, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_plugin_is_registered_and_benchmarks_stay_out_of_the_default_run():
    assert "convbench.pytest_plugin" in {e.value for e in entry_points(group="pytest11")}
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert (ROOT / "benchmarks" / "test_suite.py").is_file()


def test_conv_benchmark_extra_info_json_histogram_and_compare(tmp_path):
    (tmp_path / "test_bench.py").write_text(BENCH_FILE)
    storage = ["--benchmark-storage", str(tmp_path / "store"), "--benchmark-autosave"]
    first = pytest_in(
        tmp_path,
        *storage,
        "--benchmark-json=out.json",
        "--benchmark-histogram=hist/h",
        "--convbench-warmup=0.01",
        "--convbench-threads=1",
    )
    assert "2 passed, 1 skipped" in first.stdout
    assert "no CUDA device" in first.stdout  # -rs: the skip's reason is the backend's
    assert "convbench extra info" in first.stdout
    summary = first.stdout.split("convbench extra info", 1)[1]
    assert "test_forward" in summary and "winograd" in summary and "backward" in summary

    data = json.loads((tmp_path / "out.json").read_text())
    info = {b["name"]: b["extra_info"] for b in data["benchmarks"]}
    assert set(info) == {"test_forward", "test_backward"}
    forward, backward = info["test_forward"], info["test_backward"]
    assert (forward["backend"], forward["device"], forward["dtype"]) == (
        "winograd",
        "cpu",
        "float32",
    )
    assert forward["direction"] == "forward" and forward["mine"] == 1
    assert forward["torch_threads"] == 1 and forward["timer"].startswith("pytest-benchmark")
    assert forward["rel_err"] < 1e-4 and forward["within_tolerance"] is True
    assert forward["flops"] == 2 * 2 * 8 * 12 * 12 * 4 * 9 and forward["gflops"] > 0
    assert forward["problem"]["padding"] == [[1, 1], [1, 1]]
    assert backward["direction"] == "backward" and backward["flops"] == 2 * (2 * 2 * 6 * 32 * 4 * 5)
    assert backward["rel_err"] < 1e-4
    assert list((tmp_path / "hist").glob("h*.svg"))

    second = pytest_in(tmp_path, *storage, "--benchmark-compare")
    assert "Comparing against benchmarks from" in second.stdout + second.stderr
    assert "test_forward (0001" in second.stdout and "test_forward (NOW)" in second.stdout
    assert len(list((tmp_path / "store").rglob("*.json"))) == 2


def test_sync_timer_synchronizes_its_device_before_reading(monkeypatch):
    import torch

    from convbench import pytest_plugin

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    timer = pytest_plugin._sync_timer("cuda:1")
    assert pytest_plugin._sync_timer("cuda:1") is timer  # one precision estimate per device
    t0, t1 = timer(), timer()
    assert synced == ["cuda:1", "cuda:1"] and t1 >= t0
    assert timer.__name__.startswith("cuda_synchronize_perf_counter")


CUDA_FILE = """
import torch


def test_cuda(conv_benchmark):
    x, w = torch.randn(8, 64, 56, 56, device="cuda"), torch.randn(64, 64, 3, 3, device="cuda")
    conv_benchmark("cudnn", x, w, padding=1)
"""


@pytest.mark.cuda
def test_conv_benchmark_on_cuda_uses_the_synchronizing_timer(tmp_path):
    (tmp_path / "test_bench.py").write_text(CUDA_FILE)
    pytest_in(tmp_path, "--benchmark-json=out.json")
    bench = json.loads((tmp_path / "out.json").read_text())["benchmarks"][0]
    assert bench["extra_info"]["device"].startswith("cuda")
    assert bench["extra_info"]["timer"] == "cuda_synchronize_perf_counter"
    assert "cuda_synchronize_perf_counter" in bench["options"]["timer"]
    assert bench["extra_info"]["rel_err"] < 1e-4
