"""Peak memory above the baseline for one call of a function, measured by the allocator.

* CUDA: the caching allocator's own counters. ``memory_allocated`` before the call is the
  baseline; ``reset_peak_memory_stats`` then ``max_memory_allocated`` after a synchronize give
  the high-water mark of bytes held by live tensors (cuDNN/cuBLAS workspaces included, since
  they come from the same allocator). Cached-but-free blocks are not counted.
* CPU: torch has no CPU allocator statistics, so the call runs under the (Kineto) autograd
  profiler with ``profile_memory=True``. Every allocation and free that goes through torch's
  CPU allocator (tensors, and oneDNN/ideep buffers, which ideep routes through the same
  allocator) becomes an event carrying its signed size; the running sum of those sizes in time
  order, maximised, is the peak above the start. Tensors created and freed inside the call
  count.

What the CPU method cannot see, by construction: memory that libraries obtain with their own
``malloc`` (MKL internals, OpenMP stacks), and allocations on threads that do not carry the
profiler's thread-local state (e.g. a ``threading.Thread`` started inside the call). A tensor
that existed before the call and is freed inside it is ignored (torch logs a one-off warning),
so the result never goes below the baseline.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

METHOD_CUDA = "cuda allocator"
METHOD_CPU = "torch.profiler memory events"


@dataclass(frozen=True)
class MemoryResult:
    """Memory of one call above what was allocated when it started.

    ``peak_mem_bytes``: the high-water mark above the baseline. ``retained_bytes``: what was
    still allocated (above the baseline) when the call returned — usually its output.
    ``method`` names how it was measured; ``note`` says why a field is None.
    """

    peak_mem_bytes: int | None
    method: str
    retained_bytes: int | None = None
    note: str | None = None


def peak_from_deltas(deltas: Iterable[int]) -> tuple[int, int]:
    """``(peak, end)`` of the running sum of signed allocation sizes, both relative to the
    start; ``peak`` is never below 0 (the start itself)."""
    level = peak = 0
    for delta in deltas:
        level += delta
        peak = max(peak, level)
    return peak, level


def measure_peak_memory(fn: Callable[[], Any], device: str | torch.device) -> MemoryResult:
    """Call ``fn()`` once on ``device`` and measure its peak memory above the baseline.

    The return value of ``fn`` is kept alive until the measurement ends (so it counts in
    ``retained_bytes``) and then dropped. Exceptions from ``fn`` propagate. When nothing can be
    measured (another profiler is running, an unsupported device type, no CUDA), ``fn`` is not
    called and the result has ``peak_mem_bytes=None`` and a ``note``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return _measure_cuda(fn, device)
    if device.type == "cpu":
        return _measure_cpu(fn)
    return MemoryResult(None, "none", note=f"no memory probe for device type {device.type!r}")


def _measure_cuda(fn: Callable[[], Any], device: torch.device) -> MemoryResult:
    cuda = torch.cuda
    if not cuda.is_available():
        return MemoryResult(None, METHOD_CUDA, note="CUDA is not available")
    if device.index is None:
        device = torch.device("cuda", cuda.current_device())
    cuda.synchronize(device)
    baseline = cuda.memory_allocated(device)
    cuda.reset_peak_memory_stats(device)  # the peak restarts at the current allocation
    result = fn()
    cuda.synchronize(device)
    peak = cuda.max_memory_allocated(device) - baseline
    retained = cuda.memory_allocated(device) - baseline
    del result
    return MemoryResult(max(peak, 0), METHOD_CUDA, retained_bytes=retained)


def _measure_cpu(fn: Callable[[], Any]) -> MemoryResult:
    if torch.autograd._profiler_enabled():
        return MemoryResult(None, METHOD_CPU, note="another torch profiler is already active")
    # The autograd profiler rather than its torch.profiler wrapper: the same Kineto events,
    # without the wrapper's one-off import of torch._dynamo (seconds) on first use.
    prof = torch.autograd.profiler.profile(use_cpu=True, profile_memory=True)
    with _quiet_stderr():
        prof.__enter__()
    try:
        result = fn()
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    del result
    try:
        deltas = cpu_allocation_deltas(prof.kineto_results)
    except (AttributeError, RuntimeError, TypeError) as exc:  # profiler internals moved
        return MemoryResult(None, METHOD_CPU, note=f"cannot read profiler memory events: {exc}")
    peak, end = peak_from_deltas(deltas)
    return MemoryResult(peak, METHOD_CPU, retained_bytes=end)


def cpu_allocation_deltas(kineto_results: Any) -> list[int]:
    """Signed sizes of the CPU ``[memory]`` events in a profiler result, in time order.

    Ties in the timestamp are broken allocations-first, which can only overstate the peak.
    """
    from torch._C._autograd import DeviceType

    events = [
        (event.start_ns(), -event.nbytes())
        for event in kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
    ]
    events.sort()
    return [-neg_size for _, neg_size in events]


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 briefly.

    Kineto prints ``USDT: ... profiler_start/stop`` lines to stderr on every start and stop,
    whatever its log level; around each measurement they would flood the terminal. Only the
    profiler's start and stop run inside this, never the measured call.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
