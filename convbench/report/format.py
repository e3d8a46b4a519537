"""How convbench writes numbers, sizes, ratios and environments for people: one set of
formatting rules shared by the HTML report, the terminal tables and `convbench env`."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: Marks a difference that is not statistically significant.
NOT_SIGNIFICANT = "~"


def missing(value) -> bool:
    """None, NaN or pandas' NA."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def fmt(value, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits, ``—`` for missing, text as is."""
    if missing(value):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.{digits}g}"
        return f"{value:.{max(digits - 2, 1)}e}"
    return str(value)


def format_time(ms, digits: int = 4) -> str:
    """A time given in ms, with its unit: ``0.1295`` -> ``'129.5 µs'``, ``12.3`` ->
    ``'12.3 ms'``, ``2310`` -> ``'2.31 s'``; ``'—'`` for missing."""
    if missing(ms):
        return "—"
    value = float(ms)
    if abs(value) >= 1000:
        return f"{value / 1000:.{digits}g} s"
    if abs(value) >= 1 or value == 0:
        return f"{value:.{digits}g} ms"
    return f"{value * 1000:.{digits}g} µs"


def format_unmatched(old, new, a: str = "A", b: str = "B") -> str:
    """Why a two-run comparison has no verdict for a result: it is absent from one run
    (``only in A (ok)``), or not ``ok`` in one (``A ok, B error``); ``a``/``b`` name the runs."""
    if missing(old) and missing(new):
        return "missing"
    if missing(new):
        return f"only in {a} ({old})"
    if missing(old):
        return f"only in {b} ({new})"
    return f"{a} {old}, {b} {new}"


def format_bytes(n) -> str:
    """``33554432`` -> ``'32.0 MiB'``; ``'—'`` for missing."""
    if missing(n):
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def format_ratio(value: float, significant: bool | None = True, suffix: str = "×") -> str:
    """``'1.85×'``, or ``'1.02× ~'`` when not significant; ``'—'`` for NaN."""
    if missing(value):
        return "—"
    text = f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return text if significant else f"{text} {NOT_SIGNIFICANT}"


#: PyTorch's CUDA-only switches: meaningless on a machine without CUDA (PyTorch still reports
#: its defaults there, e.g. ``tf32_cudnn=True``), so a CPU-only run's report leaves them out.
CUDA_ONLY_KEYS = ("tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "nvidia_driver")
CUDA_ONLY_PRECISION = ("cuda.", "cudnn.")


def format_env(env: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, value)`` display rows: one per entry, one per CUDA device, sizes humanised.
    Without CUDA (no device recorded), the CUDA-only switches are left out."""
    rows: list[tuple[str, str]] = []
    has_cuda = bool(env.get("cuda_devices")) or bool(env.get("cuda_available"))
    for key, value in env.items():
        if key == "devices":
            continue  # the cpu_model and cuda:N rows say the same
        if not has_cuda and key in CUDA_ONLY_KEYS:
            continue
        if not has_cuda and key == "fp32_precision" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if not k.startswith(CUDA_ONLY_PRECISION)}
        if key == "cuda_devices":
            rows += [(f"cuda:{d.get('index')}", _describe_gpu(d)) for d in value]
        elif key == "fp32_precision" and isinstance(value, dict):
            rows += [(f"fp32_precision.{knob}", str(v)) for knob, v in value.items()]
        elif key.endswith("_bytes") and isinstance(value, int):
            rows.append((key, format_bytes(value)))
        else:
            rows.append((key, "n/a" if value is None else str(value)))
    return rows


def _describe_gpu(d: dict[str, Any]) -> str:
    parts = [str(d.get("name"))]
    if d.get("total_memory_bytes"):
        parts.append(format_bytes(d["total_memory_bytes"]))
    if d.get("sm_count"):
        parts.append(f"{d['sm_count']} SMs")
    if d.get("l2_cache_bytes"):
        parts.append(f"L2 {format_bytes(d['l2_cache_bytes'])}")
    if d.get("capability"):
        parts.append(f"sm_{d['capability'].replace('.', '')}")
    return ", ".join(parts)
