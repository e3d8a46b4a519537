"""The environment a run measured in, recorded once per run so results describe themselves.

`collect_env` gathers software versions, hardware, numeric-mode flags (TF32, determinism,
cudnn.benchmark), the project's git commit, host and time into a JSON-serialisable dict; every
entry that cannot be determined is None (with a ``*_note`` where the reason is useful).
`convbench.report.format.format_env` turns that dict into rows for ``convbench env``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from convbench.measure.caches import cpu_llc_bytes
from convbench.measure.probes.nvml import cuda_pci_bus_id, open_nvml

_FP32_PRECISION_KNOBS = ("cuda.matmul", "cudnn.conv", "mkldnn.conv", "mkldnn.matmul")


def collect_env(
    nvml: Any | None = None,
    now: Callable[[], _dt.datetime] = lambda: _dt.datetime.now(_dt.UTC),
) -> dict[str, Any]:
    """Everything about this machine and process that can change a benchmark's result.

    ``nvml`` injects a pynvml-like module and ``now`` the clock (tests).
    """
    import convbench

    config = _torch_config()
    driver, driver_note = nvidia_driver_version(nvml)
    cuda_devices = cuda_device_info()
    cpu_model = cpu_model_name()
    device_names = [f"cpu: {cpu_model}"]
    device_names += [f"cuda:{d['index']}: {d['name']}" for d in cuda_devices]
    env: dict[str, Any] = {
        "convbench_version": convbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "cuda_available": torch.cuda.is_available(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "onednn_version": _search(r"(?:MKL-DNN|oneDNN) v(\S+)", config),
        "mkl_available": torch.backends.mkl.is_available(),
        "mkl_version": _search(r"Math Kernel Library Version (\S+)", config),
        "devices": device_names,
        "cpu_model": cpu_model,
        "cpu_arch": platform.machine() or None,
        "cpu_physical_cores": _psutil_call(lambda p: p.cpu_count(logical=False)),
        "cpu_logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "llc_bytes": cpu_llc_bytes(),
        "memory_total_bytes": _psutil_call(lambda p: p.virtual_memory().total),
        "cuda_devices": cuda_devices,
        "nvidia_driver": driver,
        "nvidia_driver_note": driver_note,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "fp32_precision": _fp32_precision(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "time": now().isoformat(timespec="seconds"),
    }
    return env


def cuda_device_info() -> list[dict[str, Any]]:
    """Name, memory, SM count, L2 size, compute capability and PCI bus id of each visible GPU."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "index": index,
                "name": props.name,
                "total_memory_bytes": int(props.total_memory),
                "sm_count": int(props.multi_processor_count),
                "l2_cache_bytes": _int_or_none(getattr(props, "L2_cache_size", None)),
                "capability": f"{props.major}.{props.minor}",
                "pci_bus_id": cuda_pci_bus_id(index),
            }
        )
    return devices


def nvidia_driver_version(nvml: Any | None = None) -> tuple[str | None, str | None]:
    """``(driver version, None)`` from NVML, or ``(None, why not)``. Never raises."""
    module, reason = open_nvml(nvml)
    if module is None:
        return None, reason
    try:
        version = module.nvmlSystemGetDriverVersion()
        return (version.decode() if isinstance(version, bytes) else str(version)), None
    except Exception as exc:
        return None, f"nvmlSystemGetDriverVersion failed: {type(exc).__name__}: {exc}"
    finally:
        try:
            module.nvmlShutdown()
        except Exception:
            pass


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for field in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{field}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine() or None


#: The convbench package's own folder (``…/convbench``), whose parent is the checkout's top.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def git_commit(path: Path | None = None) -> str | None:
    """HEAD of the git checkout holding the convbench package (``-dirty`` if tracked files
    changed); None when the package is not in a checkout of its own or git is missing."""
    package_dir = (path or PACKAGE_DIR).resolve()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package_dir), *args],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # An installed copy under some other repository (say a venv inside a project) must not
    # report that repository's commit: the checkout must be the package's parent.
    if top is None or Path(top).resolve() != package_dir.parent:
        return None
    head = git("rev-parse", "HEAD")
    if head is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if status else head


def _torch_config() -> str:
    try:
        return torch.__config__.show()
    except Exception:
        return ""


def _search(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def _cudnn_version() -> int | None:
    try:
        return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        return None


def _fp32_precision() -> dict[str, str]:
    """torch >= 2.9's per-backend float32 precision knobs (``'tf32'`` means TF32 allowed)."""
    knobs = {}
    for name in _FP32_PRECISION_KNOBS:
        obj: Any = torch.backends
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
            value = obj.fp32_precision
        except (AttributeError, RuntimeError, ValueError):
            continue
        knobs[name] = str(value)
    return knobs


def _psutil_call(fn: Callable[[Any], Any]) -> Any:
    try:
        import psutil

        return fn(psutil)
    except Exception:
        return None


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None


def decision_context(device: str) -> dict[str, Any]:
    """What makes a tuning decision stale: the torch build, the device's name, the number of
    intra-op threads and the convbench version (`convbench.store.decisions`)."""
    import convbench

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    else:
        name = cpu_model_name()
    return {
        "torch": torch.__version__,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "convbench": convbench.__version__,
    }


__all__ = [
    "collect_env",
    "cpu_model_name",
    "cuda_device_info",
    "decision_context",
    "git_commit",
    "nvidia_driver_version",
]
