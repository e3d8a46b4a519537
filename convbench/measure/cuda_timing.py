"""How a block of calls is timed on a GPU: ``--cuda-timing events|graph|blocking``.

All three read CUDA events on the stream, so what they measure is the GPU's own time; they
differ in how they keep the host's launch overhead out of it, which matters for small kernels
(a few µs of launch cost is a 30% "regression" on a 10 µs kernel):

* ``events`` (`convbench.measure.clocks.CudaClock`): events around ``n`` launches. The GPU
  waits for the host whenever a kernel finishes before the next one is enqueued, so for tiny
  kernels the launch rate is measured.
* ``graph`` (`CudaGraphClock`): the block of ``n`` calls is captured once into a CUDA graph
  (after a warm-up on a side stream, as capture requires) and replayed between the events: one
  launch for the whole block (Triton's ``do_bench_cudagraph``). Where capture fails — a call
  that synchronises, allocates on the host or autotunes — the clock falls back to events and
  ``fallback`` says why; the row records it (``timing_note``).
* ``blocking`` (`CudaBlockingClock`): a spin kernel (``torch.cuda._sleep``) is queued first
  and holds the stream while the host enqueues the whole block behind it, the start event
  recorded after it (nvbench's blocking kernel). The hold is sized from the host's enqueue time
  of the previous block (twice it, at least 20 µs); a block whose enqueue outlasted its hold is
  counted in ``late`` — the GPU may have waited for launches — and the next hold is longer.

The clocks take their CUDA entry points as arguments (``capture``, ``sleep``, ``events``), so
their decisions are unit-tested without a GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

CUDA_TIMINGS = ("events", "graph", "blocking")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class _Events:
    """Start and end CUDA events on the current stream; ``elapsed_ns()`` after ``end()``."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_ns(self, start: Any) -> int:
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return round(start.elapsed_time(end) * 1e6)


def capture_graph(fn: Callable[[], object], n: int, device: torch.device) -> Any:
    """A CUDA graph of ``n`` calls of ``fn``: warm-up on a side stream, then capture."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(n):
            fn()
    torch.cuda.synchronize(device)
    return graph


class CudaGraphClock:
    """Replays a captured graph of the block (see the module doc)."""

    name = "cuda_graph"

    def __init__(
        self,
        device: str | torch.device = "cuda",
        *,
        capture: Callable[[Callable[[], object], int, torch.device], Any] = capture_graph,
        events: Any = None,
    ):
        self.device = torch.device(device)
        self._capture = capture
        self._events = events or _Events(self.device)
        self._graphs: dict[tuple[int, int], Any] = {}
        #: Why the clock times with plain events instead (None: it does not).
        self.fallback: str | None = None

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def time_block(self, fn: Callable[[], object], n: int) -> int:
        if n == 0:  # an empty block: the events' own overhead
            return self._events.elapsed_ns(self._events.start())
        if self.fallback is None:
            key = (id(fn), n)
            graph = self._graphs.get(key)
            if graph is None:
                try:
                    graph = self._capture(fn, n, self.device)
                except Exception as exc:  # capture is refused: time the launches instead
                    self.fallback = f"graph capture failed ({_first_line(exc)}); timed with events"
                else:
                    self._graphs[key] = graph
            if graph is not None:
                start = self._events.start()
                graph.replay()
                return self._events.elapsed_ns(start)
        start = self._events.start()
        for _ in range(n):
            fn()
        return self._events.elapsed_ns(start)

    def sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    @property
    def note(self) -> str | None:
        return self.fallback


#: The shortest hold of the blocking kernel: launching the first kernels takes about this.
MIN_HOLD_NS = 20_000


def _sleep_rate(device: torch.device) -> float:
    """Cycles of ``torch.cuda._sleep`` per ns on ``device``, measured once."""
    torch.cuda._sleep(1_000)  # load the kernel
    torch.cuda.synchronize(device)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    cycles = 5_000_000
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / (start.elapsed_time(end) * 1e6)


class CudaBlockingClock:
    """Queues the block behind a spin kernel (see the module doc)."""

    name = "cuda_blocking"

    def __init__(
        self,
        device: str | torch.device = "cuda",
        *,
        sleep: Callable[[int], object] | None = None,
        cycles_per_ns: float | None = None,
        events: Any = None,
        host_ns: Callable[[], int] = time.perf_counter_ns,
    ):
        self.device = torch.device(device)
        self._sleep = sleep or torch.cuda._sleep
        self.cycles_per_ns = (
            cycles_per_ns if cycles_per_ns is not None else _sleep_rate(self.device)
        )
        self._events = events or _Events(self.device)
        self._host_ns = host_ns
        self._enqueue_ns: dict[int, int] = {}  # per block size: the last host enqueue time
        self.blocks = 0
        #: Blocks whose enqueue took longer than their hold.
        self.late = 0

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def hold_ns(self, n: int) -> int:
        """How long the spin kernel holds the stream for a block of ``n`` calls."""
        return max(MIN_HOLD_NS, 2 * self._enqueue_ns.get(n, 0))

    def time_block(self, fn: Callable[[], object], n: int) -> int:
        hold = self.hold_ns(n)
        self._sleep(max(1, round(hold * self.cycles_per_ns)))
        start = self._events.start()
        t0 = self._host_ns()
        for _ in range(n):
            fn()
        enqueue = self._host_ns() - t0
        elapsed = self._events.elapsed_ns(start)
        self.blocks += 1
        if enqueue > hold:
            self.late += 1
        self._enqueue_ns[n] = max(enqueue, self._enqueue_ns.get(n, 0) // 2)
        return elapsed

    def sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    @property
    def note(self) -> str | None:
        if not self.late:
            return None
        return (
            f"{self.late} of {self.blocks} blocks were enqueued slower than the blocking "
            "kernel held the stream (launch gaps may be included)"
        )


def cuda_clock(device: str | torch.device, timing: str = "events"):
    """The clock for ``--cuda-timing``."""
    from convbench.measure.clocks import CudaClock

    if timing == "events":
        return CudaClock(device)
    if timing == "graph":
        return CudaGraphClock(device)
    if timing == "blocking":
        return CudaBlockingClock(device)
    raise ValueError(f"--cuda-timing: expected one of {', '.join(CUDA_TIMINGS)}, got {timing!r}")
