"""The machine's attainable compute rate and memory bandwidth: the roofs of the report's
roofline.

A convolution's GFLOP/s means little alone; against what the same device reaches on its best
kernel in the same dtype it says how much room is left. That ceiling is measured, not taken
from a datasheet: a square matrix multiply (``n × n @ n × n``, ``2 n³`` FLOPs), the best-tuned
operation any BLAS has, timed by the timing engine (`convbench.measure.engine.measure`) on
the device's clock exactly as the convolutions are. The median time of its samples gives the
peak, the same statistic the results use.

The memory roof is measured the same way: a copy between two buffers far larger than the
last-level cache (`convbench.measure.caches`), STREAM's "Copy" kernel, timed by the same engine;
its bytes moved (each buffer's size read once and written once) over the median time give the
bandwidth in GB/s (10⁹ bytes per second, so that GFLOP/s ÷ GB/s is FLOP per byte).

The run measures the GEMM peak once per (device, dtype) and the bandwidth once per device
before its sweep (`convbench run` asks its worker process, so both are taken with the same
thread settings as the results) and stores them with `convbench.store.Store.set_run_peaks` as
``{"cpu/float32": gflops, "cpu/bandwidth_gbs": gbs, ...}`` (the bandwidth's key is
`convbench.analysis.roofline.bandwidth_key`).
"""

from __future__ import annotations

import torch

from convbench.measure.caches import cpu_llc_bytes, gpu_l2_bytes
from convbench.measure.clocks import clock_for
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure

#: Matrix size per device type: large enough to be compute-bound on that device (the working
#: set, 3 n² elements, far exceeds the caches), small enough to take well under a second.
GEMM_SIZE = {"cpu": 1024, "cuda": 8192}
PEAK_TIMING = TimingConfig(warmup_s=0.1, min_samples=5, max_samples=50, max_time_s=0.5)
#: Each copy buffer is this many times the last-level cache (so the copy streams from memory),
#: kept within these bounds per device type: large enough that a cache-size probe that reads
#: too small cannot matter, small enough to fit beside the run.
BANDWIDTH_CACHE_FACTOR = 4
BANDWIDTH_BUFFER_BYTES = {"cpu": (64 * 2**20, 1 * 2**30), "cuda": (256 * 2**20, 2 * 2**30)}


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, str):
        name, dtype = dtype, getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype: expected a torch dtype name such as 'float32', got {name!r}")
    return dtype


def _check_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    return device


def measure_peak_gflops(
    device: str | torch.device,
    dtype: str | torch.dtype,
    n: int | None = None,
    config: TimingConfig = PEAK_TIMING,
) -> float:
    """Achieved GFLOP/s of an ``n × n`` GEMM in ``dtype`` on ``device`` (median time).

    ``dtype`` may be a name (``'float32'``). Raises ValueError for an unknown dtype and
    RuntimeError when the device or the dtype's matmul is not available.
    """
    device = _check_device(device)
    dtype = _torch_dtype(dtype)
    n = n or GEMM_SIZE.get(device.type, 1024)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    with torch.no_grad():
        m = measure(lambda: torch.mm(a, b), config, clock_for(device))
    return 2.0 * n**3 / (m.median_ms * 1e-3) / 1e9


def bandwidth_buffer_bytes(device: str | torch.device) -> int:
    """Size of each of the two copy buffers: `BANDWIDTH_CACHE_FACTOR` × the device's
    last-level cache (CPU: `cpu_llc_bytes`, CUDA: `gpu_l2_bytes`), within
    `BANDWIDTH_BUFFER_BYTES`; the lower bound where the cache size is unknown."""
    device = torch.device(device)
    low, high = BANDWIDTH_BUFFER_BYTES.get(device.type, BANDWIDTH_BUFFER_BYTES["cpu"])
    cache = gpu_l2_bytes(device) if device.type == "cuda" else cpu_llc_bytes()
    return min(high, max(low, BANDWIDTH_CACHE_FACTOR * (cache or 0)))


def measure_bandwidth_gbs(
    device: str | torch.device,
    n_bytes: int | None = None,
    config: TimingConfig = PEAK_TIMING,
) -> float:
    """Achieved memory bandwidth in GB/s of copying one ``n_bytes`` buffer into another on
    ``device`` (median time; ``2 · n_bytes`` moved per copy: read once, written once).

    ``n_bytes`` defaults to `bandwidth_buffer_bytes`. Both buffers are written before timing,
    so no first-touch page fault is timed. Raises RuntimeError when the device is not
    available.
    """
    device = _check_device(device)
    n_bytes = n_bytes or bandwidth_buffer_bytes(device)
    n = max(1, n_bytes // 4)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.zeros(n, dtype=torch.float32, device=device)
    with torch.no_grad():
        m = measure(lambda: dst.copy_(src), config, clock_for(device))
    return 2.0 * 4 * n / (m.median_ms * 1e-3) / 1e9
