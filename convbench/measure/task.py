"""Measure tasks (case × backend × dtype × device × direction) and return their result rows.

This is what the worker process runs, for one task or for the backends of one case together
(`measure_tasks`: interleaved rounds). The steps, in order:

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
5. **time** — `convbench.measure.engine.measure_interleaved` on the device's clock, warm or
   cold: the tasks of a group sample in alternating, shuffled rounds; samples the disturbance
   probe flags (`convbench.measure.disturbance`) are kept apart; the probe also gives each
   task's CPU utilisation, and NVML (CUDA) samples taken during a task's samples are its
   telemetry.
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
import socket
import time
import warnings
from dataclasses import dataclass, field

import psutil
import torch

from convbench.backends import get_backend
from convbench.backends.plan import options_of
from convbench.errors import Unsupported
from convbench.measure import probes
from convbench.measure.clocks import clock_for
from convbench.measure.disturbance import cpu_probe
from convbench.measure.engine import Measurement, measure, measure_interleaved
from convbench.measure.flags import flag_reasons, probe_rule
from convbench.measure.flush import make_flush
from convbench.measure.groups import each_alone
from convbench.measure.options import MeasureOptions
from convbench.measure.pace import reference as pace_reference
from convbench.measure.passes import pass_run, upstream_gradient
from convbench.measure.reference import reference
from convbench.measure.result import new_result, node_info
from convbench.problem.layout import layout_of, to_layout
from convbench.problem.suite import Task
from convbench.store.record import Result

SEED = 0

# PyTorch warns once per process that 'same' padding with an even kernel copies the input;
# the reference and the vendor backends do this knowingly, and the warning would land in the
# middle of the progress bar.
warnings.filterwarnings(
    "ignore", message="Using padding='same' with even kernel lengths", category=UserWarning
)


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
_inputs_cache: dict[tuple, tuple] = {}


def _reference(task: Task, x, w, b, grad_out):
    """`convbench.measure.reference` of the task's pass; cached for the backends of one
    problem (the tasks of a case run back to back), in every layout (the values are the
    same: only the strides differ)."""
    key = (task.case.case_id, task.dtype, task.device, task.direction)
    if key not in _reference_cache:
        _reference_cache.clear()
        kw = task.problem.conv_kwargs()
        _reference_cache[key] = reference(task.direction, x, w, b, grad_out, **kw)
    return _reference_cache[key]


def _inputs(task: Task):
    """The task's input, weight, bias and upstream gradient (None for the forward), in the
    task's layout, one set for the backends of one problem: a backend's time must not depend
    on where its own copy of the inputs landed in memory (one kernel measured 1–2% apart on
    separate copies)."""
    key = (task.case.case_id, task.dtype, task.device, task.direction, task.layout)
    if key not in _inputs_cache:
        _inputs_cache.clear()
        problem, dtype, device = task.problem, task.torch_dtype, torch.device(task.device)
        x, w, b = problem.make_tensors(dtype, device, seed=SEED)
        dy = None
        if task.direction != "forward":
            dy = upstream_gradient(problem.output_shape, dtype, device, SEED + 1)
        x, w, dy = (None if t is None else to_layout(t, task.layout) for t in (x, w, dy))
        _inputs_cache[key] = (x, w, b, dy)
    return _inputs_cache[key]


def _errors(got, want) -> tuple[float, float]:
    worst_abs, worst_rel = 0.0, 0.0
    for g, r in zip(got, want, strict=True):
        acc = probes.accuracy(g, r)
        worst_abs = max(worst_abs, acc.max_abs_err)
        worst_rel = max(worst_rel, acc.rel_err)
    return worst_abs, worst_rel


@dataclass
class Samples:
    """What the store keeps of one result's samples (`convbench.store.sqlite.Store`)."""

    ms: tuple[float, ...]
    rounds: tuple[int, ...] = ()
    discarded_ms: tuple[float, ...] = ()


@dataclass
class _Setup:
    """One task made ready to time: its row so far and the call to repeat."""

    task: Task
    row: Result
    fn: object = None
    device: torch.device | None = None
    done: bool = False  # the row is final (unsupported, oom, error)
    samples: Samples | None = None
    extra: dict = field(default_factory=dict)


class _Skip(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


def _fail(setup: _Setup, exc: BaseException) -> None:
    """A failing task becomes a row with a status and a reason; the sweep goes on."""
    row = setup.row
    if isinstance(exc, Unsupported):
        row.update(status="unsupported", reason=str(exc))
    elif isinstance(exc, _Skip):
        row.update(status=exc.status, reason=str(exc))
    elif isinstance(exc, torch.OutOfMemoryError):
        row.update(status="oom", reason=f"CUDA out of memory: {str(exc).splitlines()[0]}")
    else:
        message = str(exc).splitlines()[0] if str(exc) else ""
        row.update(status="error", reason=f"{type(exc).__name__}: {message}"[:500])
    setup.done = True


def measure_task(task: Task, options: MeasureOptions) -> tuple[Result, Samples | None]:
    """Measure one task; returns (result row, its samples or None)."""
    return measure_tasks([task], options)[0]


def measure_tasks(
    tasks: list[Task], options: MeasureOptions
) -> list[tuple[Result, Samples | None]]:
    """Measure tasks that share a problem, dtype, device and direction (the backends of one
    case) in interleaved rounds, so that drift during the measurement falls on all of them
    alike and their samples pair up round by round. One task is measured alone. A task that
    fails at any step gets its row and leaves the others to be measured."""
    setups = []
    for task in tasks:
        row = new_result(
            task,
            started_at=time.time(),
            node=socket.gethostname(),
            node_json=json.dumps(node_info()),
            mode=options.timing.mode,
        )
        setup = _Setup(task, row)
        try:
            _prepare(setup, options)
        except Exception as exc:  # a failing case is a row, never the end of the sweep
            _fail(setup, exc)
        setups.append(setup)
    live = [s for s in setups if not s.done]
    if live:
        group = _group_id(live[0].task) if len(live) > 1 else None
        try:
            _time(live, options, group)
        except Exception:  # one of them broke while interleaved: time each alone
            each_alone(live, lambda alone: _time_or_fail(alone[0], options))
        for setup in live:
            if setup.done:
                continue
            try:
                _memory(setup)
                setup.row["status"] = "ok"
            except Exception as exc:
                _fail(setup, exc)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    out = []
    for setup in setups:
        setup.row["finished_at"] = time.time()
        out.append((setup.row, setup.samples if setup.row.get("status") == "ok" else None))
    return out


def _time_or_fail(setup: _Setup, options: MeasureOptions) -> None:
    try:
        _time([setup], options, None)
    except Exception as exc:
        _fail(setup, exc)


def prepared_call(task: Task, options: MeasureOptions):
    """The call `measure_tasks` would time for ``task`` (planned, its answer checked), for
    timing it with another tool; raises what the task's row would record as its reason."""
    setup = _Setup(task, new_result(task))
    _prepare(setup, options)
    return setup.fn


def _group_id(task: Task) -> str:
    return f"{task.case.case_id}/{task.dtype}/{task.device}/{task.direction}"


def _prepare(setup: _Setup, options: MeasureOptions) -> None:
    task, row = setup.task, setup.row
    device = torch.device(task.device)
    dtype = task.torch_dtype
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Unsupported("no CUDA device")
    backend = get_backend(task.backend)
    problem = task.problem
    reason = backend.reason(problem.args(dtype, device, layout=task.layout), task.direction)
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
    x, w, b, dy = _inputs(task)
    run = pass_run(backend, task.direction, x, w, b, dy, kw)
    want = _reference(task, x, w, b, dy)
    row["max_abs_err"], row["rel_err"] = _errors(run.got, want)
    row["out_layout"] = layout_of(run.got[0])
    with torch.no_grad():
        prep = measure(run.prepare, options.prepare_timing, clock_for(device))
    row["prepare_ms"] = prep.median_ms
    row["saved_bytes"] = run.saved_bytes
    row["dispatch"] = (run.prepared or {}).get("dispatch")
    row["options_json"] = json.dumps(options_of(run.prepared or {}), sort_keys=True)

    def fn():
        with torch.no_grad():
            return run.fn()

    rotate = options.timing.mode == "cold" and options.cold_inputs == "rotate"
    if rotate and device.type == "cuda":
        fn, setup.extra["rotate_note"] = _rotating(backend, task.direction, x, w, b, dy, kw)
        setup.extra["rotate"] = True
    setup.fn, setup.device = fn, device


#: `_rotating` keeps at most this many copies of a task's inputs.
MAX_ROTATING_COPIES = 64


def _rotating(backend, direction, x, w, b, dy, kw):
    """Cold inputs without a flush: enough copies of the inputs (and upstream gradient) to
    fill 2× the L2, each call on the next copy, so every call finds its own inputs out of L2
    (the weights, read by every call, stay). Returns the call and a note for the row."""
    from convbench.measure.flush import flush_size_bytes

    target = flush_size_bytes(x.device)
    per_copy = x.numel() * x.element_size() + (
        dy.numel() * dy.element_size() if dy is not None else 0
    )
    k = min(MAX_ROTATING_COPIES, max(2, math.ceil(target / max(per_copy, 1)) + 1))
    runs = [
        pass_run(backend, direction, x.clone(), w, b, None if dy is None else dy.clone(), kw)
        for _ in range(k)
    ]
    state = {"i": 0}

    def fn():
        run = runs[state["i"]]
        state["i"] = (state["i"] + 1) % k
        with torch.no_grad():
            return run.fn()

    note = f"cold inputs: {k} rotating copies, {k * per_copy / 2**20:.1f} MiB"
    if k * per_copy < target:
        note += f" (< 2× L2 = {target / 2**20:.0f} MiB: some stay cached)"
    return fn, note


def _time(setups: list[_Setup], options: MeasureOptions, group: str | None) -> None:
    device = setups[0].device
    clock = clock_for(device, options.cuda_timing)
    flush = None
    if options.timing.mode == "cold":
        rotating = all(s.extra.get("rotate") for s in setups)
        flush = (lambda: None) if rotating else make_flush(device)
    # No CPU sampler thread beside CPU timing (it would wake up and compete): the probe gives
    # each task's CPU utilisation from the samples themselves.
    sampler = probes.WindowSampler(device, options.nvml_interval_s, cpu_interval_s=None)
    with sampler:
        probe = cpu_probe() if device.type == "cpu" else None
        if sampler.nvml_sampler is not None:
            probe = sampler.nvml_sampler.clock_probe()  # CUDA: throttled samples set apart
        pace = pace_reference(options.usual_pace_us) if device.type == "cpu" else None
        found = measure_interleaved(
            [s.fn for s in setups], options.timing, clock, flush, probe=probe, pace=pace
        )
    telemetry = sampler.result_fields()
    for setup, m in zip(setups, found, strict=True):
        fields = telemetry
        if sampler.nvml_sampler is not None:  # the polls taken while this one ran
            fields = probes.result_fields(sampler.nvml_sampler.telemetry_for(m.windows))
            calls = m.n_samples * m.block_size
            if fields.get("energy_j") is not None and calls:
                fields["energy_per_call_j"] = fields["energy_j"] / calls
            if getattr(probe, "mean_clock_mhz", None) is not None:
                fields["sm_clock_mhz"] = probe.mean_clock_mhz
        _record(setup, m, fields, group, probe, options.timing.max_lost)
        if device.type == "cuda":
            notes = [getattr(clock, "note", None), setup.extra.get("rotate_note")]
            setup.row["cuda_timing"] = options.cuda_timing
            setup.row["timing_note"] = "; ".join(n for n in notes if n) or None


def _record(setup: _Setup, m: Measurement, telemetry: dict, group, probe, max_lost) -> None:
    row = setup.row
    row.update(telemetry)
    if m.cpu_util_pct is not None:
        row["cpu_util_pct"] = m.cpu_util_pct
        row["threads"] = getattr(probe, "threads", None) or row.get("threads")
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
        n_discarded=m.n_discarded,
        disturbed=int(m.disturbed or m.unsteady or m.off_pace),
        pace_us=m.pace_us,
        pace=m.pace,
        round_group=group,
        gflops=row["flops"] / (s.median_ms * 1e-3) / 1e9 if s.median_ms > 0 else None,
    )
    reasons = flag_reasons(m, probe_rule(probe, max_lost))
    if reasons:
        row["reason"] = "; ".join(reasons)
    setup.samples = Samples(m.samples_ms, m.rounds if group else (), m.discarded_ms)


def _memory(setup: _Setup) -> None:
    mem = probes.measure_peak_memory(setup.fn, setup.device)
    setup.row["peak_mem_bytes"] = mem.peak_mem_bytes
    setup.row["mem_method"] = mem.method
