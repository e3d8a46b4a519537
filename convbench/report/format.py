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


#: Binary size units and their bytes, smallest first: every size convbench shows uses these.
BINARY_UNITS = (("B", 1), ("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40))


def format_bytes(n) -> str:
    """``33554432`` -> ``'32.0 MiB'``; ``'—'`` for missing."""
    if missing(n):
        return "—"
    size = float(n)
    unit, scale = next(
        ((u, f) for u, f in reversed(BINARY_UNITS) if abs(size) >= f), BINARY_UNITS[0]
    )
    return f"{size:.0f} {unit}" if scale == 1 else f"{size / scale:.1f} {unit}"


def memory_unit(sizes) -> tuple[str, int]:
    """The one binary unit for a set of sizes in bytes (``('MiB', 1048576)``): the largest
    not above their median, so the typical value reads 1 to 1023; MiB when none is known.
    The report's table and its plot take their unit from here, so they always agree."""
    values = [float(v) for v in sizes if not missing(v) and float(v) > 0]
    if not values:
        return "MiB", 2**20
    median = float(pd.Series(values).median())
    return next(((u, f) for u, f in reversed(BINARY_UNITS) if median >= f), BINARY_UNITS[0])


def format_ratio(value: float, significant: bool | None = True, suffix: str = "×") -> str:
    """``'1.85×'``, or ``'1.02× ~'`` when not significant; ``'—'`` for NaN."""
    if missing(value):
        return "—"
    text = f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return text if significant else f"{text} {NOT_SIGNIFICANT}"


def _percent(share) -> str:
    return f"{float(share) * 100:g}%"


def _seconds(value) -> str:
    return format_time(float(value) * 1000, 3)


def _rounds(t: dict[str, Any], interleave: bool | None) -> str | None:
    if interleave is False:
        return "each backend timed alone"
    if t.get("round_s") is None:
        return None
    at_least = f" (at least {t['min_rounds']})" if t.get("min_rounds") else ""
    return f"interleaved rounds of {_seconds(t['round_s'])}{at_least}"


#: (the `TimingConfig` fields a phrase needs, the phrase), in the order shown; a phrase that
#: comes out empty is left out.
_TIMING_PHRASES = (
    (("mode",), lambda t: f"{t['mode']} mode"),
    (("warmup_s",), lambda t: f"warmup {_seconds(t['warmup_s'])}"),
    (("min_samples", "max_samples"), lambda t: f"{t['min_samples']}–{t['max_samples']} samples"),
    (("max_time_s",), lambda t: f"at most {_seconds(t['max_time_s'])} of samples per case"),
    (
        ("rel_ci",),
        lambda t: (
            f"stop once the median's {_percent(t.get('confidence', 0.95))} CI is within "
            f"±{_percent(t['rel_ci'])}"
        ),
    ),
    (
        ("floor_samples",),
        lambda t: f"at least {t['floor_samples']} undisturbed samples" * bool(t["floor_samples"]),
    ),
    (
        ("max_overhead",),
        lambda t: f"clock overhead under {_percent(t['max_overhead'])} of a sample",
    ),
    (
        ("max_lost",),
        lambda t: (
            f"a sample is disturbed if it lost over {_percent(t['max_lost'])} of its CPU time"
        ),
    ),
    (("max_drift",), lambda t: f"unsteady if the median drifts over {_percent(t['max_drift'])}"),
    (
        ("max_pace",),
        lambda t: f"off-pace if the host ran over {_percent(t['max_pace'])} off its usual pace",
    ),
)
#: The `TimingConfig` fields `format_timing` writes as text; others are shown as key=value.
TIMING_FIELDS = {k for keys, _ in _TIMING_PHRASES for k in keys} | {
    "confidence",
    "round_s",
    "min_rounds",
}


def format_timing(timing: dict[str, Any], interleave: bool | None = None) -> str:
    """A run's timing settings (a `TimingConfig` as a dict; ``interleave`` from its options)
    as one line with units: ``'warm mode, warmup 50 ms, 10–1000 samples, at most 1 s of
    samples per case, …'``. Settings this version does not know follow as ``key=value``."""
    parts = [
        phrase(timing)
        for keys, phrase in _TIMING_PHRASES
        if all(timing.get(k) is not None for k in keys)
    ]
    parts = [p for p in (*parts, _rounds(timing, interleave)) if p]
    parts += [f"{k}={v}" for k, v in timing.items() if k not in TIMING_FIELDS]
    return ", ".join(parts) or "—"


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
