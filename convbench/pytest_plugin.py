"""pytest plugin: time convbench backends through pytest-benchmark, as the `conv_benchmark`
fixture (registered by installing convbench: entry point ``pytest11``).

    def test_winograd_3x3(conv_benchmark):
        x, w = torch.randn(8, 64, 56, 56), torch.randn(64, 64, 3, 3)
        y = conv_benchmark(backend="winograd", input=x, weight=w, padding=1)

`conv_benchmark` is a thin layer over pytest-benchmark's ``benchmark`` fixture, so its
storage, ``--benchmark-compare``, ``--benchmark-histogram`` and ``--benchmark-json`` work
unchanged. What it adds:

* **What is timed** is what `convbench run` times (`convbench.measure.passes`): ``forward``
  runs the backend's plan on the input with the weight prepared once (inference: the
  Winograd filter transform or the filter's FFT is not in the loop); ``backward_data`` and
  ``backward_weight`` each gradient alone from a fixed upstream gradient; ``backward`` both
  after one forward; ``train`` a whole step with the weight re-prepared. It returns what the
  pass computes: the output; dx; dw (or ``(dw, db)`` with a bias); ``(dx, dw[, db])``;
  ``(y, dx, dw[, db])``.
* **Device-correct timing.** pytest-benchmark reads one host clock around each round of
  calls. On a CUDA device the fixture swaps in a timer that synchronizes the device before
  each read, so a round spans exactly the GPU work it enqueued (what
  `torch.utils.benchmark.Timer` does on CUDA). CUDA events cannot serve here: the runner
  needs a scalar clock, and event timestamps are only available pairwise, in float32 ms.
  On the CPU the work is synchronous and pytest-benchmark's own timer is kept.
* **Warmup by time**: the function is called for ``--convbench-warmup`` seconds (default
  0.05, at least once) before pytest-benchmark calibrates, absorbing first-call costs
  (allocator growth, oneDNN/cuDNN kernel selection, lazy initialisation).
* **Extra info** in every saved/JSON benchmark: backend, device, dtype, direction, the
  problem, GFLOP/s from the median, and ``max_abs_err``/``rel_err`` against a float64
  reference (`convbench.measure.reference`), with ``within_tolerance`` by the dtype's
  `convbench.problem.axes.TOLERANCE`. A table of them follows pytest-benchmark's.
* A configuration the backend cannot compute (`convbench.Unsupported`) **skips** the test,
  with the backend's reason.
"""

from __future__ import annotations

import time

import pytest

_ROWS = pytest.StashKey[list]()
EXTRA_COLUMNS = ("backend", "device", "dtype", "direction", "gflops", "rel_err", "max_abs_err")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("convbench", "convbench (conv_benchmark fixture)")
    group.addoption(
        "--convbench-warmup",
        type=float,
        default=0.05,
        metavar="S",
        help="conv_benchmark: seconds of warmup calls before pytest-benchmark's calibration "
        "(default: 0.05)",
    )
    group.addoption(
        "--convbench-threads",
        type=int,
        metavar="N",
        help="torch intra-op threads for the session, like `convbench run --threads` (default: "
        "torch's; on a machine shared with other work, fewer threads than cores avoids stalls)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ROWS] = []
    threads = config.getoption("convbench_threads", None)
    if threads is not None:
        if threads < 1:
            raise pytest.UsageError(f"--convbench-threads: expected a positive int, got {threads}")
        import torch

        torch.set_num_threads(threads)


class _SyncTimer:
    """``perf_counter`` after `torch.cuda.synchronize`: the timer pytest-benchmark reads
    around each round on a CUDA device. One instance per device, so pytest-benchmark's
    per-timer precision estimate is made once."""

    def __init__(self, device):
        self.device = device
        self.__name__ = f"cuda_synchronize_perf_counter[{device}]"
        self.__module__ = __name__

    def __call__(self) -> float:
        import torch

        torch.cuda.synchronize(self.device)
        return time.perf_counter()


_TIMERS: dict[str, _SyncTimer] = {}


def _sync_timer(device) -> _SyncTimer:
    key = str(device)
    if key not in _TIMERS:
        _TIMERS[key] = _SyncTimer(device)
    return _TIMERS[key]


class ConvBenchmark:
    """The `conv_benchmark` fixture's value: call it once per test, like ``benchmark``."""

    def __init__(self, benchmark, warmup_s: float, rows: list):
        self.benchmark = benchmark
        self.warmup_s = warmup_s
        self._rows = rows

    @property
    def extra_info(self) -> dict:
        """pytest-benchmark's ``extra_info`` of this test (add your own keys to it)."""
        return self.benchmark.extra_info

    def __call__(
        self,
        backend: str,
        input,
        weight,
        bias=None,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        *,
        direction: str = "forward",
        group: str | None = None,
    ):
        """Time ``backend`` on this convolution (arguments as `F.conv1d`/`F.conv2d`)."""
        import torch

        from convbench.backends import get_backend
        from convbench.errors import Unsupported
        from convbench.measure.probes import accuracy
        from convbench.problem.axes import DIRECTIONS, dtype_name, flop_factor, within_tolerance
        from convbench.problem.spec import ConvArgs

        if direction not in DIRECTIONS:
            raise ValueError(
                f"direction: expected one of {', '.join(DIRECTIONS)}, got {direction!r}"
            )
        impl = get_backend(backend)
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        args = ConvArgs.from_call(input, weight, bias, **kw)
        reason = impl.reason(args, direction)
        if reason is not None:
            pytest.skip(reason)
        if group is not None:
            self.benchmark.group = group
        try:
            fn, got, want = _prepare(impl, direction, input, weight, bias, kw)
        except Unsupported as exc:
            pytest.skip(str(exc))
        worst = [accuracy(g, r) for g, r in zip(got, want, strict=True)]
        max_abs = max(a.max_abs_err for a in worst)
        rel = max(a.rel_err for a in worst)
        device = input.device
        flops = args.flops * flop_factor(direction)
        info = self.benchmark.extra_info
        info.update(
            backend=backend,
            device=str(device),
            dtype=dtype_name(input.dtype),
            direction=direction,
            problem=_problem_dict(args),
            flops=flops,
            max_abs_err=max_abs,
            rel_err=rel,
            within_tolerance=within_tolerance(rel, input.dtype),
            warmup_s=self.warmup_s,
            torch_threads=torch.get_num_threads(),
        )
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
        if device.type == "cuda" and hasattr(self.benchmark, "_timer"):
            self.benchmark._timer = _sync_timer(device)
        info["timer"] = (
            "cuda_synchronize_perf_counter" if sync else "pytest-benchmark --benchmark-timer"
        )
        if not getattr(self.benchmark, "disabled", False):
            _warmup(fn, self.warmup_s, sync)
        result = self.benchmark(fn)
        result = result[0] if len(result) == 1 else result
        median_s = _median_s(self.benchmark)
        info["gflops"] = flops / median_s / 1e9 if median_s else None
        self._rows.append((self.benchmark.fullname, info))
        return result


def _prepare(impl, direction, input, weight, bias, kw):
    """(timed function, backend's answer, float64 reference answer), as `convbench run`
    (`convbench.measure.passes`)."""
    from convbench.measure.passes import pass_run, upstream_gradient
    from convbench.measure.reference import reference
    from convbench.problem.spec import ConvArgs

    dy = None
    if direction != "forward":
        args = ConvArgs.from_call(input, weight, bias, **kw)
        shape = args.output_shape[1:] if args.unbatched else args.output_shape
        dy = upstream_gradient(shape, input.dtype, input.device, 1)
    x, w = input.detach(), weight.detach()
    b = None if bias is None else bias.detach()
    run = pass_run(impl, direction, x, w, b, dy, kw)
    return run.fn, run.got, reference(direction, x, w, b, dy, **kw)


def _problem_dict(args) -> dict:
    return {
        "input_shape": list(args.input_shape),
        "weight_shape": list(args.weight_shape),
        "bias": args.has_bias,
        "stride": list(args.stride),
        "padding": [list(p) for p in args.padding],
        "dilation": list(args.dilation),
        "groups": args.groups,
    }


def _warmup(fn, warmup_s: float, sync) -> None:
    """Call ``fn`` until ``warmup_s`` of wall time has passed (at least once)."""
    deadline = time.perf_counter() + warmup_s
    while True:
        fn()
        if sync is not None:
            sync()
        if time.perf_counter() >= deadline:
            return


def _median_s(benchmark) -> float | None:
    """Median seconds per call from pytest-benchmark's stats (None when benchmarks are off)."""
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    median = getattr(stats, "median", None)
    return median if median and median > 0 else None


@pytest.fixture
def conv_benchmark(benchmark, request) -> ConvBenchmark:
    """pytest-benchmark's ``benchmark`` for a convbench backend's convolution; see the module
    docstring. ``conv_benchmark(backend, input, weight, bias=None, stride=1, padding=0,
    dilation=1, groups=1, direction="forward", group=None)`` returns the output."""
    return ConvBenchmark(
        benchmark, request.config.getoption("convbench_warmup"), request.config.stash[_ROWS]
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """After pytest-benchmark's table: convbench's extra info, one line per benchmark."""
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    header = ("name", *EXTRA_COLUMNS)
    table = [header] + [
        (name.rsplit("::", 1)[-1], *(_fmt(info.get(c)) for c in EXTRA_COLUMNS))
        for name, info in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    terminalreporter.write_sep("-", "convbench extra info (GFLOP/s from the median)")
    for row in table:
        line = "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        terminalreporter.write_line(line.rstrip())
