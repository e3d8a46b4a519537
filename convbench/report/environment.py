"""The environment section: what the report's header shows of each run record — where,
when, on what and how it was measured. Pure: a run record (`convbench.store.Store.run`) in,
``(label, text)`` rows out.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from convbench.analysis.roofline import split_peaks
from convbench.report.format import (
    CUDA_ONLY_PRECISION,
    fmt,
    format_bytes,
    format_timing,
    missing,
)


def _flags(env: Mapping) -> str:
    """PyTorch's precision switches as the run had them; the CUDA-only ones only where the
    run had CUDA (elsewhere PyTorch reports defaults that applied to nothing)."""
    has_cuda = bool(env.get("cuda_devices")) or bool(env.get("cuda_available"))
    names = ("float32_matmul_precision", "deterministic")
    if has_cuda:
        names = ("tf32_matmul", "tf32_cudnn", *names, "cudnn_benchmark")
    parts = [f"{name}={env[name]}" for name in names if name in env]
    parts += [
        f"{k}={v}"
        for k, v in (env.get("fp32_precision") or {}).items()
        if has_cuda or not k.startswith(CUDA_ONLY_PRECISION)
    ]
    if has_cuda:
        parts.append("cudnn backend: TF32 off, benchmark off (cudnn_tf32 / cudnn_benchmark: on)")
    return ", ".join(parts) or "—"


def env_rows(run: Mapping) -> list[tuple[str, str]]:
    """What the header shows of a run record (`convbench.store.Store.run`)."""
    env, config = run.get("env") or {}, run.get("config") or {}
    options = config.get("options") or {}
    timing = options.get("timing") or {}
    created = run.get("created_at")
    started = _dt.datetime.fromtimestamp(created, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    gpus = [
        f"cuda:{d.get('index')}: {d.get('name')}, {format_bytes(d.get('total_memory_bytes'))}"
        for d in env.get("cuda_devices") or []
    ]
    cores = f"{env.get('cpu_physical_cores')} physical / {env.get('cpu_logical_cores')} logical"
    gemm, bandwidth = split_peaks(run.get("peaks") or {})
    rows = [
        ("suite", run.get("suite")),
        ("status", run.get("status")),
        ("started", started if created else None),
        ("command line", run.get("command")),
        ("devices", ", ".join(env.get("devices") or []) or None),
        ("CPU", f"{env.get('cpu_model')} ({env.get('cpu_arch')}), {cores}"),
        ("memory", format_bytes(env.get("memory_total_bytes"))),
        ("GPUs", "; ".join(gpus) or "none"),
        ("NVIDIA driver", env.get("nvidia_driver") or env.get("nvidia_driver_note")),
        ("versions", _versions(env)),
        (
            "threads",
            f"torch {env.get('torch_threads')} (--threads {config.get('threads') or 'default'})",
        ),
        ("flags", _flags(env)),
        ("timing", format_timing(timing, options.get("interleave")) if timing else None),
        ("peak GEMM GFLOP/s", ", ".join(f"{k}: {fmt(v)}" for k, v in gemm.items()) or None),
        ("memory bandwidth", _bandwidth(bandwidth) if gemm or bandwidth else None),
        ("git commit", env.get("git_commit")),
        ("host", f"{env.get('hostname')} · {env.get('os')}"),
    ]
    return [(key, "—" if missing(value) else str(value)) for key, value in rows]


def _versions(env: Mapping) -> str:
    names = ("convbench_version", "python", "torch", "cuda", "cudnn", "onednn_version")
    names += ("mkl_version",)
    return ", ".join(
        f"{name.removesuffix('_version')} {env[name]}" for name in names if env.get(name)
    )


def _bandwidth(bandwidth: Mapping[str, float | None]) -> str:
    """The measured copy bandwidth per device, or why the roofline has no memory roof."""
    shown = [f"{device}: {fmt(gbs)} GB/s" for device, gbs in bandwidth.items() if gbs]
    return ", ".join(shown) or "not measured (a run from before convbench measured it)"
