"""The roofline's points: each result's arithmetic intensity and its share of the measured peak,
and the roof itself: ``min(GEMM peak, memory bandwidth × intensity)``.

A run stores its measured roofs (`convbench.measure.peak`) in one mapping: the GEMM peak per
device and dtype under ``'cpu/float32'`` (GFLOP/s), the copy bandwidth per device under
`bandwidth_key` (``'cpu/bandwidth_gbs'``, GB/s). Pure pandas, like the rest of
`convbench.analysis`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import pandas as pd

from convbench.analysis.compare import ok_results
from convbench.problem.axes import flop_factor

_ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
#: The suffix of a device's memory-bandwidth entry among a run's peaks.
BANDWIDTH_SUFFIX = "bandwidth_gbs"


def bandwidth_key(device: str) -> str:
    """Where a run's peaks hold ``device``'s measured memory bandwidth [GB/s]:
    ``'cpu/bandwidth_gbs'``."""
    return f"{device}/{BANDWIDTH_SUFFIX}"


def split_peaks(peaks: Mapping[str, float | None]) -> tuple[dict, dict]:
    """A run's peaks as ``({'cpu/float32': GEMM GFLOP/s}, {'cpu': bandwidth GB/s})``."""
    gemm, bandwidth = {}, {}
    for key, value in (peaks or {}).items():
        device, _, what = key.rpartition("/")
        if what == BANDWIDTH_SUFFIX:
            bandwidth[device] = value
        else:
            gemm[key] = value
    return gemm, bandwidth


def roof_gflops(peak_gflops: float, bandwidth_gbs: float | None, intensity: float) -> float:
    """The attainable GFLOP/s at ``intensity`` FLOP/byte: ``min(peak, bandwidth × intensity)``;
    the flat GEMM peak alone where no bandwidth was measured (None or NaN)."""
    if bandwidth_gbs is None or math.isnan(bandwidth_gbs):
        return peak_gflops
    return min(peak_gflops, bandwidth_gbs * intensity)


def compulsory_bytes(problem_json: str, direction: str, dtype: str, flops: float) -> float:
    """Bytes a direction must at least move, reading each operand and writing each result
    once: forward reads x, w and writes y; backward_data reads dy, w, writes dx;
    backward_weight reads x, dy, writes dw; backward reads x, w, dy, writes dx, dw; train
    does the forward and the backward.

    Element counts come from the problem's fields; the output's from the result's FLOP count
    (the forward's ``2 · N · K · ∏out · C/groups · ∏kernel`` times the direction's factor),
    so no padding rules are repeated here."""
    p = json.loads(problem_json)
    kernel = math.prod(p["kernel"]) if isinstance(p["kernel"], list) else p["kernel"]
    spatial = math.prod(p["spatial"]) if isinstance(p["spatial"], list) else p["spatial"]
    c_per_group = p["in_channels"] // p["groups"]
    forward_flops = flops / flop_factor(direction)
    x = p["batch"] * p["in_channels"] * spatial
    w = p["out_channels"] * c_per_group * kernel
    y = forward_flops / (2 * c_per_group * kernel)
    elements = {
        "forward": x + w + y,
        "backward_data": y + w + x,
        "backward_weight": x + y + w,
        "backward": 2 * (x + w) + y,
        "train": 3 * (x + w) + 2 * y,
    }[direction]
    return float(elements * _ITEMSIZE.get(dtype, 4))


def roofline_points(df: pd.DataFrame, peaks: Mapping[str, Mapping[str, float | None]]):
    """Measured results with ``intensity_flop_per_byte`` (FLOPs over `compulsory_bytes`),
    ``peak_gflops`` (the run's measured peak for its device and dtype, from ``peaks[run_id]``
    keyed ``'cpu/float32'``), ``pct_of_peak`` (achieved GFLOP/s as a percentage of it) and
    ``bandwidth_gbs`` (the run's measured memory bandwidth of the device, NaN where the run
    has none: `bandwidth_key`)."""
    ok = ok_results(df)
    ok = ok[ok["gflops"].notna() & ok["problem_json"].notna()].copy()
    ok["intensity_flop_per_byte"] = [
        flops / compulsory_bytes(pj, direction, dtype, flops)
        for flops, pj, direction, dtype in zip(
            ok["flops"], ok["problem_json"], ok["direction"], ok["dtype"], strict=True
        )
    ]
    ok["peak_gflops"] = [
        (peaks.get(run, {}) or {}).get(f"{device}/{dtype}")
        for run, device, dtype in zip(ok["run_id"], ok["device"], ok["dtype"], strict=True)
    ]
    ok["peak_gflops"] = pd.to_numeric(ok["peak_gflops"], errors="coerce")
    ok["pct_of_peak"] = 100.0 * ok["gflops"] / ok["peak_gflops"]
    ok["bandwidth_gbs"] = [
        (peaks.get(run, {}) or {}).get(bandwidth_key(device))
        for run, device in zip(ok["run_id"], ok["device"], strict=True)
    ]
    ok["bandwidth_gbs"] = pd.to_numeric(ok["bandwidth_gbs"], errors="coerce")
    return ok
