"""Cache sizes of the machine, read in one place: the flush buffers of cold-mode timing and
the environment a run records both use these, so what is recorded is what was flushed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

CPU_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


def parse_cache_size(text: str) -> int:
    """sysfs cache size (``'32768K'``, ``'1M'``, ``'512'``) in bytes."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    return int(number) * scale


def cpu_llc_bytes(cache_dir: Path = CPU_CACHE_DIR) -> int | None:
    """Size of the last-level (highest-level data or unified) cache CPU 0 sees, in bytes.

    Read from sysfs on Linux (an unreadable entry is skipped, instruction caches are not
    counted), else from glibc's sysconf; None when neither knows.
    """
    best: tuple[int, int] | None = None  # (level, bytes)
    for index in sorted(cache_dir.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            size = parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and (best is None or (level, size) > best):
            best = (level, size)
    if best is not None:
        return best[1]
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            size = os.sysconf(name)
        except (ValueError, OSError, AttributeError):
            continue
        if size > 0:
            return size
    return None


def gpu_l2_bytes(device: str | torch.device = "cuda") -> int | None:
    """L2 size the CUDA runtime reports for ``device``, or None if it reports none."""
    if not torch.cuda.is_available():
        raise RuntimeError(
            "gpu_l2_bytes needs a CUDA device, but torch.cuda.is_available() is False"
        )
    size = getattr(torch.cuda.get_device_properties(torch.device(device)), "L2_cache_size", 0)
    return int(size) if size else None
