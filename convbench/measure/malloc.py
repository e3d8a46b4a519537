"""The C allocator in one fixed state, the same for every backend whatever ran before.

glibc's malloc serves a request above its *mmap threshold* with a fresh ``mmap`` and unmaps
it on ``free``, so a kernel that allocates its output anew faults every page in on every
call. The threshold starts at 128 KiB and rises — for the rest of the process — the first
time a larger mmapped block is freed (up to 32 MiB on 64-bit). So one oneDNN convolution
(8×64×56² → 256 channels, 1×1, 2 threads, a 25 MiB output) took 33 ms with ~14,000 page
faults per call in a fresh process and 7 ms with none in a process where an earlier backend
had freed a 30 MiB buffer: a backend's time depended on which backends ran before it.

`steady_state` fixes the thresholds where that dynamic rule ends in a long-running process —
mmap threshold 32 MiB, trim threshold twice that — before anything is allocated, which also
turns the dynamic rule off: every backend is measured in the same state, in any order, as a
warmed-up training loop sees it. Blocks above 32 MiB are mmapped per call for every backend
alike. (With one intra-op thread, some oneDNN paths still fault ~5,000 pages per call in
either state; that cost is the same whatever ran before.)
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES  # what the dynamic rule sets beside it


def steady_state() -> str:
    """Fix glibc's malloc thresholds (see the module doc); returns what was done, or why
    not, for the run's environment."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "unchanged: not glibc"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "unchanged: no mallopt"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    ):
        return "unchanged: mallopt refused"
    mmap, trim = MMAP_THRESHOLD_BYTES >> 20, TRIM_THRESHOLD_BYTES >> 20
    return f"glibc mmap_threshold={mmap}MiB trim_threshold={trim}MiB"
