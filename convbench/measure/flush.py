"""Cold-cache timing: a buffer larger than the device's cache, written before each sample.

The buffer is `FLUSH_FACTOR` times the CPU's last-level cache or the GPU's L2, both read by
`convbench.measure.caches` (the sizes the run's environment records).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from convbench.measure.caches import cpu_llc_bytes, gpu_l2_bytes

#: Fallback last-level cache size when sysfs does not say (larger than most server LLC slices).
DEFAULT_CPU_LLC_BYTES = 64 * 2**20
#: Fallback L2 size when the CUDA device properties do not say (above every current GPU's L2:
#: A100 40 MiB, H100/H200 50 MiB, B200 126 MiB).
DEFAULT_GPU_L2_BYTES = 128 * 2**20
#: Flush buffers are this many times the cache size: writing exactly the cache size leaves some
#: old lines resident (set associativity, non-LRU replacement, non-inclusive LLCs, partitioned
#: GPU L2), and the extra bytes cost microseconds on a GPU, milliseconds on a CPU.
FLUSH_FACTOR = 2


def flush_size_bytes(device: str | torch.device) -> int:
    """Bytes a flush buffer needs on ``device``: `FLUSH_FACTOR` times its L2 (GPU) or LLC (CPU).

    Falls back to `DEFAULT_GPU_L2_BYTES` / `DEFAULT_CPU_LLC_BYTES` when the size is unknown.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return FLUSH_FACTOR * (gpu_l2_bytes(dev) or DEFAULT_GPU_L2_BYTES)
    if dev.type == "cpu":
        return FLUSH_FACTOR * (cpu_llc_bytes() or DEFAULT_CPU_LLC_BYTES)
    raise ValueError(f"device: no cache flush for device type {dev.type!r}")


@dataclass(frozen=True, eq=False)
class CacheFlush:
    """Evicts the device's cache by writing a buffer larger than it; call it before a sample.

    GPU: ``zero_()`` on the buffer (a device memset, through L2, as triton's ``do_bench``).
    CPU: ``add_(1)`` on a uint8 buffer, which reads and writes every line with ordinary stores
    (a large ``fill_``/memset may use non-temporal stores that bypass the cache).
    ``size_bytes`` is what a result should record.
    """

    device: str
    size_bytes: int
    buffer: torch.Tensor = field(repr=False)

    def __call__(self) -> None:
        if self.buffer.is_cuda:
            self.buffer.zero_()
        else:
            self.buffer.add_(1)


def make_flush(device: str | torch.device) -> CacheFlush:
    """A `CacheFlush` for ``device`` with a buffer of `flush_size_bytes` allocated on it."""
    dev = torch.device(device)
    size = flush_size_bytes(dev)
    buffer = torch.zeros(size, dtype=torch.uint8, device=dev)
    return CacheFlush(device=str(dev), size_bytes=size, buffer=buffer)
