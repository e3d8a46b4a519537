"""Measure one task (case × backend × dtype × device × direction) and return its result row.

This is what the worker process runs. The steps, in order:

1. **check** — `backend.reason` for the problem and the direction (no tensors):
   `unsupported` + reason.
2. **memory guard** (CPU) — a working set estimated above the available memory is skipped as
   `oom` with the figures, instead of swapping the machine to death.
3. **plan** — ``backend.prepare`` for the direction (per-weight work) timed on its own:
   ``prepare_ms`` (`convbench.measure.passes` says what each direction times).
4. **check the answer** — max absolute and max relative error against the float64
   reference of that direction (`convbench.measure.reference`), computed from the same
   (already cast) inputs, so input quantisation is not counted; where a direction yields
   several tensors (gradients) the worst is reported.
5. **time** — `convbench.measure.engine.measure` on the device's clock, warm or cold, while the NVML
   sampler (CUDA) or the CPU sampler (CPU) watches the timed window.
6. **memory** — one more call under the peak-memory probe: bytes allocated above the
   baseline at the peak.

FLOPs are the direct convolution's times the direction's factor
(`convbench.problem.axes.FLOP_FACTOR`): each gradient counts what the forward does.

Any exception becomes a row with status ``error`` (or ``oom`` for CUDA out-of-memory) and the
message as the reason; it never escapes to stop the sweep.
"""

from __future__ import annotations

import json
import math
import platform
import socket
import time
import warnings

import psutil
import torch

from convbench.backends import get_backend
from convbench.backends.plan import options_of
from convbench.errors import Unsupported
from convbench.measure import probes
from convbench.measure.clocks import clock_for
from convbench.measure.engine import measure
from convbench.measure.flush import make_flush
from convbench.measure.options import MeasureOptions
from convbench.measure.passes import pass_run, upstream_gradient
from convbench.measure.reference import reference
from convbench.problem.axes import flop_factor
from convbench.problem.suite import Task

SEED = 0

# PyTorch warns once per process that 'same' padding with an even kernel copies the input;
# the reference and the vendor backends do this knowingly, and the warning would land in the
# middle of the progress bar.
warnings.filterwarnings(
    "ignore", message="Using padding='same' with even kernel lengths", category=UserWarning
)


def node_info() -> dict:
    """Where a result was measured: enough to tell machines of a mixed fleet apart."""
    info = {"hostname": socket.gethostname(), "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def base_row(task: Task) -> dict:
    p = task.problem
    return {
        "result_key": task.key,
        "case_id": task.case.case_id,
        "case_name": task.case.name,
        "count": task.case.count,
        "backend": task.backend,
        "device": task.device,
        "dtype": task.dtype,
        "direction": task.direction,
        "problem_json": json.dumps(p.to_dict()),
        "nd": p.nd,
        "batch": p.batch,
        "flops": float(p.flops * flop_factor(task.direction)),
    }


def estimate_working_set_bytes(task: Task) -> int:
    """A deliberately generous estimate of the bytes one task needs at its peak: inputs,
    outputs and gradients, the float64 reference, and the backend's own workspace."""
    p = task.problem
    itemsize = torch.empty((), dtype=task.torch_dtype).element_size()
    elems = math.prod(p.input_shape) + math.prod(p.weight_shape) + math.prod(p.output_shape)
    copies = 2 if task.direction == "forward" else 4
    workspace = get_backend(task.backend).workspace_bytes(p.args(task.torch_dtype, task.device))
    return elems * (itemsize * copies + 8 * 2) + workspace


_reference_cache: dict[tuple, tuple] = {}


def _reference(task: Task, x, w, b, grad_out):
    """`convbench.measure.reference` of the task's pass; cached for the backends of one
    problem (the tasks of a case run back to back)."""
    key = (task.case.case_id, task.dtype, task.device, task.direction)
    if key not in _reference_cache:
        _reference_cache.clear()
        kw = task.problem.conv_kwargs()
        _reference_cache[key] = reference(task.direction, x, w, b, grad_out, **kw)
    return _reference_cache[key]


def _errors(got, want) -> tuple[float, float]:
    worst_abs, worst_rel = 0.0, 0.0
    for g, r in zip(got, want, strict=True):
        acc = probes.accuracy(g, r)
        worst_abs = max(worst_abs, acc.max_abs_err)
        worst_rel = max(worst_rel, acc.rel_err)
    return worst_abs, worst_rel


def measure_task(task: Task, options: MeasureOptions) -> tuple[dict, list[float] | None]:
    """Measure one task; returns (result row, raw per-call samples in ms or None)."""
    row = base_row(task)
    row["started_at"] = time.time()
    row["node"] = socket.gethostname()
    row["node_json"] = json.dumps(node_info())
    row["mode"] = options.timing.mode
    samples = None
    try:
        samples = _measure(task, options, row)
        row["status"] = "ok"
    except Unsupported as exc:
        row.update(status="unsupported", reason=str(exc))
    except _Skip as exc:
        row.update(status=exc.status, reason=str(exc))
    except torch.OutOfMemoryError as exc:
        row.update(status="oom", reason=f"CUDA out of memory: {str(exc).splitlines()[0]}")
    except Exception as exc:  # a failing case is a row, never the end of the sweep
        message = str(exc).splitlines()[0] if str(exc) else ""
        row.update(status="error", reason=f"{type(exc).__name__}: {message}"[:500])
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["finished_at"] = time.time()
    return row, samples


class _Skip(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


def _measure(task: Task, options: MeasureOptions, row: dict) -> list[float]:
    device = torch.device(task.device)
    dtype = task.torch_dtype
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Unsupported("no CUDA device")
    backend = get_backend(task.backend)
    problem = task.problem
    reason = backend.reason(problem.args(dtype, device), task.direction)
    if reason is not None:
        raise Unsupported(reason)
    if device.type == "cpu":
        need = estimate_working_set_bytes(task)
        available = psutil.virtual_memory().available
        if need > options.memory_fraction * available:
            raise _Skip(
                "oom",
                f"estimated working set {need / 2**30:.2f} GiB exceeds "
                f"{options.memory_fraction:.0%} of available memory "
                f"({available / 2**30:.2f} GiB); not run",
            )

    kw = problem.conv_kwargs()
    x, w, b = problem.make_tensors(dtype, device, seed=SEED)
    clock = clock_for(device)
    flush = make_flush(device) if options.timing.mode == "cold" else None
    dy = None
    if task.direction != "forward":
        dy = upstream_gradient(problem.output_shape, dtype, device, SEED + 1)
    run = pass_run(backend, task.direction, x, w, b, dy, kw)
    got = run.got
    want = _reference(task, x, w, b, dy)
    with torch.no_grad():
        prep = measure(run.prepare, options.prepare_timing, clock)
    row["prepare_ms"] = prep.median_ms
    row["saved_bytes"] = run.saved_bytes
    row["dispatch"] = (run.prepared or {}).get("dispatch")
    row["options_json"] = json.dumps(options_of(run.prepared or {}), sort_keys=True)

    def fn():
        with torch.no_grad():
            return run.fn()

    row["max_abs_err"], row["rel_err"] = _errors(got, want)
    del got

    sampler = probes.telemetry_sampler(device, interval_s=options.nvml_interval_s)
    with sampler:
        m = measure(fn, options.timing, clock, flush)
    row.update(sampler.result_fields())

    mem = probes.measure_peak_memory(fn, device)
    row["peak_mem_bytes"] = mem.peak_mem_bytes
    row["mem_method"] = mem.method

    s = m.stats
    row.update(
        median_ms=s.median_ms,
        iqr_ms=s.iqr_ms,
        mean_ms=s.mean_ms,
        std_ms=s.std_ms,
        min_ms=s.min_ms,
        ci_low_ms=s.ci_low_ms,
        ci_high_ms=s.ci_high_ms,
        n_samples=s.n_samples,
        block_size=m.block_size,
        stop_reason=m.stop_reason,
        gflops=row["flops"] / (s.median_ms * 1e-3) / 1e9 if s.median_ms > 0 else None,
    )
    return list(m.samples_ms)
