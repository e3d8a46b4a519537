"""The machine's attainable compute rate: the ceiling of the report's roofline.

A convolution's GFLOP/s means little alone; against what the same device reaches on its best
kernel in the same dtype it says how much room is left. That ceiling is measured, not taken
from a datasheet: a square matrix multiply (``n × n @ n × n``, ``2 n³`` FLOPs), the best-tuned
operation any BLAS has, timed by the timing engine (`convbench.measure.engine.measure`) on
the device's clock exactly as the convolutions are. The median time of its samples gives the
peak, the same statistic the results use.

The run measures it once per (device, dtype) before its sweep (`convbench run` asks its
worker process, so the rate is taken with the same thread settings as the results) and stores
it with `convbench.store.Store.set_run_peaks` as ``{"cpu/float32": gflops, ...}``.
"""

from __future__ import annotations

import torch

from convbench.measure.clocks import clock_for
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure

#: Matrix size per device type: large enough to be compute-bound on that device (the working
#: set, 3 n² elements, far exceeds the caches), small enough to take well under a second.
GEMM_SIZE = {"cpu": 1024, "cuda": 8192}
PEAK_TIMING = TimingConfig(warmup_s=0.1, min_samples=5, max_samples=50, max_time_s=0.5)


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
    device = torch.device(device)
    if isinstance(dtype, str):
        name, dtype = dtype, getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype: expected a torch dtype name such as 'float32', got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    n = n or GEMM_SIZE.get(device.type, 1024)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    with torch.no_grad():
        m = measure(lambda: torch.mm(a, b), config, clock_for(device))
    return 2.0 * n**3 / (m.median_ms * 1e-3) / 1e9
