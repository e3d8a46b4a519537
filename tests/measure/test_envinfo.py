"""Environment record: keys, JSON-serialisable, CUDA/NVML branches through fakes, parsers."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import convbench
from convbench.measure import envinfo
from convbench.measure.caches import cpu_llc_bytes, parse_cache_size
from convbench.measure.envinfo import (
    collect_env,
    cpu_model_name,
    cuda_device_info,
    git_commit,
    nvidia_driver_version,
)
from convbench.report.format import format_bytes, format_env

EXPECTED_KEYS = {
    "convbench_version", "python", "torch", "cuda", "cudnn", "cuda_available",
    "mkldnn_available", "onednn_version", "mkl_available", "mkl_version", "devices",
    "cpu_model", "cpu_arch", "cpu_physical_cores", "cpu_logical_cores", "torch_threads",
    "llc_bytes", "memory_total_bytes", "cuda_devices", "nvidia_driver", "nvidia_driver_note",
    "tf32_matmul", "tf32_cudnn", "float32_matmul_precision", "fp32_precision", "deterministic",
    "cudnn_benchmark", "git_commit", "hostname", "os", "time",
}  # fmt: skip


class FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, init_error=None, version="550.54.15"):
        self.init_error, self.version = init_error, version
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        if isinstance(self.version, Exception):
            raise self.version
        return self.version


class NVMLError_LibraryNotFound(Exception):
    pass


def fixed_now():
    return dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_collect_env_keys_and_json():
    env = collect_env(nvml=FakeNvml(), now=fixed_now)
    assert set(env) == EXPECTED_KEYS
    json.dumps(env)  # must serialise as is
    assert env["torch"] == torch.__version__
    assert env["time"] == "2025-01-02T03:04:05+00:00"
    assert env["nvidia_driver"] == "550.54.15" and env["nvidia_driver_note"] is None
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["deterministic"] == torch.are_deterministic_algorithms_enabled()
    assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert env["devices"][0].startswith("cpu: ")
    assert env["cpu_logical_cores"] >= 1


def test_collect_env_with_real_pynvml_never_raises():
    env = collect_env()
    json.dumps(env)
    assert env["nvidia_driver"] is not None or env["nvidia_driver_note"]


def test_collect_env_reflects_flags(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    env = collect_env(nvml=FakeNvml())
    assert env["cudnn_benchmark"] is True


def test_driver_version_reasons():
    assert nvidia_driver_version(FakeNvml(version=b"535.1")) == ("535.1", None)
    version, note = nvidia_driver_version(FakeNvml(init_error=NVMLError_LibraryNotFound()))
    assert version is None and "NVML library not found" in note
    fake = FakeNvml(version=FakeNvml.NVMLError("Unknown Error"))
    version, note = nvidia_driver_version(fake)
    assert version is None and "nvmlSystemGetDriverVersion failed" in note
    assert fake.shutdowns == 1


def test_driver_version_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert nvidia_driver_version() == (None, "pynvml is not installed (pip install nvidia-ml-py)")


def test_cuda_device_info_with_fake_cuda(monkeypatch):
    props = SimpleNamespace(
        name="NVIDIA H100 80GB HBM3",
        total_memory=85_000_000_000,
        multi_processor_count=132,
        L2_cache_size=50 * 2**20,
        major=9,
        minor=0,
        pci_domain_id=0,
        pci_bus_id=0x3B,
        pci_device_id=0,
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    [gpu] = cuda_device_info()
    assert gpu == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "total_memory_bytes": 85_000_000_000,
        "sm_count": 132,
        "l2_cache_bytes": 50 * 2**20,
        "capability": "9.0",
        "pci_bus_id": "00000000:3b:00.0",
    }
    rows = dict(format_env({"cuda_devices": [gpu]}))
    assert rows["cuda:0"] == "NVIDIA H100 80GB HBM3, 79.2 GiB, 132 SMs, L2 50.0 MiB, sm_90"


def test_cuda_device_info_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_device_info() == []


def test_format_env_rows():
    env = {
        "torch": "2.13.0",
        "cuda": None,
        "llc_bytes": 32 * 2**20,
        "devices": ["cpu: X"],
        "cuda_devices": [],
        "fp32_precision": {"cudnn.conv": "tf32", "mkldnn.conv": "none"},
        "tf32_cudnn": True,
        "deterministic": False,
    }
    # without CUDA, PyTorch's CUDA-only switches (still reported at their defaults) are left out
    assert format_env(env) == [
        ("torch", "2.13.0"),
        ("cuda", "n/a"),
        ("llc_bytes", "32.0 MiB"),
        ("fp32_precision.mkldnn.conv", "none"),
        ("deterministic", "False"),
    ]
    gpu = {**env, "cuda_devices": [{"index": 0, "name": "H200"}]}
    rows = dict(format_env(gpu))
    assert rows["fp32_precision.cudnn.conv"] == "tf32" and rows["tf32_cudnn"] == "True"
    assert all(isinstance(v, str) for _, v in format_env(collect_env(nvml=FakeNvml())))


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**30) == "3.0 GiB"


@pytest.mark.parametrize(
    ("text", "size"), [("32K", 32768), ("32768K\n", 2**25), ("1M", 2**20), ("512", 512)]
)
def test_parse_cache_size(text, size):
    assert parse_cache_size(text) == size


def test_cpu_llc_from_sysfs(tmp_path):
    for name, level, kind, size in [
        ("index0", 1, "Data", "48K"),
        ("index1", 1, "Instruction", "32K"),
        ("index2", 2, "Unified", "2048K"),
        ("index3", 3, "Unified", "105M"),
    ]:
        d = tmp_path / name
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert cpu_llc_bytes(tmp_path) == 105 * 2**20
    fallback = cpu_llc_bytes(tmp_path / "missing")  # glibc sysconf, or nothing
    assert fallback is None or fallback > 0


def test_cpu_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n")
    assert cpu_model_name(info) == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_model_name(tmp_path / "missing")  # falls back to platform


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_of_this_checkout_is_recorded():
    """Run from a git clone of convbench, the commit is the clone's HEAD (it was looked for
    from ``convbench/runner/`` once, and never found)."""
    top = Path(convbench.__file__).resolve().parents[1]
    if not (top / ".git").exists():
        pytest.skip("convbench is not imported from a git checkout")
    head = subprocess.run(
        ["git", "-C", str(top), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert git_commit() in (head, f"{head}-dirty")
    assert collect_env()["git_commit"] in (head, f"{head}-dirty")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            check=True,
            capture_output=True,
        )

    repo = tmp_path / "repo"
    package = repo / "pkg"
    package.mkdir(parents=True)
    (package / "mod.py").write_text("x = 1\n")
    git("init", "-q")
    assert git_commit(package) is None  # no commit yet
    git("add", ".")
    git("commit", "-q", "-m", "c")
    head = git_commit(package)
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    (package / "untracked.py").write_text("")
    assert git_commit(package) == head  # untracked files do not make it dirty
    (package / "mod.py").write_text("x = 2\n")
    assert git_commit(package) == f"{head}-dirty"
    (package / "sub").mkdir()
    assert git_commit(package / "sub") is None  # not a package at the checkout's top level
    outside = tmp_path / "elsewhere" / "pkg"
    outside.mkdir(parents=True)
    assert git_commit(outside) is None


def test_git_commit_of_this_package_or_none():
    commit = git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)
    assert envinfo.collect_env(nvml=FakeNvml())["git_commit"] == commit
