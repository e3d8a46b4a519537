"""`convbench selftest [--device cpu|cuda|cuda:N]`: the first command on a new machine.

Each check returns a `Check` (pass, fail or skip, with the figures that decided it), and the
command ends with the table of them. On a GPU host it proves the CUDA side works before a
user trusts a sweep:

1. **device** — the device exists; its name, memory, capability (or the CPU model).
2. **conformance** — every backend, in the device's dtypes, in the forward and backward
   passes on a few problems (1D, 2D, stride, groups), against the float64 reference: each
   answer within the dtype's tolerance (cudnn_tf32 in float32: TF32's) or refused with a
   reason; a wrong answer or a crash fails.
3. **timing** — CUDA: one ~20 µs convolution timed with events, graph and blocking
   (`convbench.measure.cuda_timing`); graph and blocking must agree within ±2%. CPU: the clock
   overhead and the harness's per-call overhead.
4. **telemetry** — CUDA: NVML sampled over a busy second; utilisation, power, SM clock and
   energy must all be readable. CPU: the disturbance probe (`/proc/self/task/*/schedstat`).
5. **sweep** — a two-case suite with every backend, forward and backward, through the real
   worker and store; no ``error``/``timeout`` rows, and on CUDA the telemetry columns of the
   ``ok`` rows filled.
6. **report** — the HTML report of that sweep written.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from convbench.problem.axes import dtype_name

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


SELFTEST_SUITE = """
[suite]
name = "selftest"
description = "two small problems for convbench selftest"

[defaults]
batch = 2

[[case]]
name = "conv2d_3x3"
in_channels = 16
out_channels = 16
spatial = [16, 16]
kernel = 3
padding = 1

[[case]]
name = "conv1d_k5_s2"
in_channels = 8
out_channels = 8
spatial = [64]
kernel = 5
stride = 2
"""

CONFORMANCE_PROBLEMS = (
    dict(in_channels=8, out_channels=8, spatial=(12, 12), kernel=3, padding=1),
    dict(in_channels=8, out_channels=12, spatial=(15, 14), kernel=3, stride=2, padding=1),
    dict(in_channels=8, out_channels=8, spatial=(10, 10), kernel=3, groups=4, padding=1),
    dict(in_channels=6, out_channels=4, spatial=(40,), kernel=5, padding=2),
)
#: cudnn_tf32's float32 answers are held to TF32's accuracy here.
TF32_TOLERANCE = 5e-3


def check_device(device: torch.device) -> Check:
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return Check(
                "device", FAIL, f"torch.cuda.is_available() is False (torch {torch.__version__})"
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            return Check("device", FAIL, f"no {device}: {torch.cuda.device_count()} CUDA device(s)")
        p = torch.cuda.get_device_properties(index)
        detail = (
            f"{p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
            f"{p.multi_processor_count} SMs; torch {torch.__version__}, CUDA {torch.version.cuda}"
        )
        return Check("device", PASS, detail)
    from convbench.measure.envinfo import collect_env

    env = collect_env()
    return Check("device", PASS, f"{env.get('cpu_model')}, {torch.get_num_threads()} threads")


def check_conformance(device: torch.device) -> Check:
    import convbench
    from convbench.measure.passes import pass_run, upstream_gradient
    from convbench.measure.probes import accuracy
    from convbench.measure.reference import reference
    from convbench.problem import ConvProblem
    from convbench.problem.axes import tolerance

    dtypes = (
        (torch.float32, torch.float16, torch.bfloat16)
        if device.type == "cuda"
        else (
            torch.float64,
            torch.float32,
        )
    )
    ok = refused = 0
    wrong: list[str] = []
    for name in convbench.backend_names():
        backend = convbench.get_backend(name)
        for spec in CONFORMANCE_PROBLEMS:
            problem = ConvProblem(batch=2, bias=True, **spec)
            for dtype in dtypes:
                x, w, b = problem.make_tensors(dtype, device, seed=0)
                kw = problem.conv_kwargs()
                for direction in ("forward", "backward"):
                    dy = None
                    if direction != "forward":
                        dy = upstream_gradient(problem.output_shape, dtype, device, 1)
                    label = f"{name} {direction} {dtype_name(dtype)} {problem.key}"
                    if backend.reason(problem.args(dtype, device), direction) is not None:
                        refused += 1
                        continue
                    try:
                        got = pass_run(backend, direction, x, w, b, dy, kw).got
                        want = reference(direction, x, w, b, dy, **kw)
                    except Exception as exc:  # a crash is as wrong as a wrong answer
                        wrong.append(f"{label}: {type(exc).__name__}: {exc}"[:200])
                        continue
                    limit = tolerance(dtype)
                    if name == "cudnn_tf32" and dtype == torch.float32:
                        limit = TF32_TOLERANCE
                    worst = max(accuracy(g, r).rel_err for g, r in zip(got, want, strict=True))
                    if not worst <= limit:
                        wrong.append(f"{label}: rel_err {worst:.2g} > {limit:g}")
                    else:
                        ok += 1
    detail = f"{ok} answers within tolerance, {refused} refused with a reason"
    if wrong:
        return Check("conformance", FAIL, f"{len(wrong)} wrong: " + "; ".join(wrong[:3]))
    return Check("conformance", PASS if ok else FAIL, detail)


def check_timing(device: torch.device) -> Check:
    from convbench.measure.clocks import clock_for, measure_overhead
    from convbench.measure.config import TimingConfig
    from convbench.measure.engine import measure

    if device.type != "cuda":
        clock = clock_for(device)
        overhead = measure_overhead(clock, repeats=1001)
        empty = measure(lambda: None, TimingConfig(warmup_s=0.1), clock).median_ms * 1e6
        return Check(
            "timing", PASS, f"clock read {overhead:.0f} ns, harness per call {empty:.0f} ns"
        )
    x = torch.randn(8, 64, 56, 56, device=device)
    w = torch.randn(64, 64, 3, 3, device=device)

    def fn():
        return torch.nn.functional.conv2d(x, w, padding=1)

    config = TimingConfig(warmup_s=0.2, max_time_s=1.0)
    medians, notes = {}, []
    for mode in ("events", "graph", "blocking"):
        clock = clock_for(device, mode)
        medians[mode] = measure(fn, config, clock).median_ms
        if getattr(clock, "note", None):
            notes.append(f"{mode}: {clock.note}")
    diff = medians["graph"] / medians["blocking"] - 1
    detail = ", ".join(f"{m} {v * 1e3:.1f} µs" for m, v in medians.items())
    detail += f"; graph vs blocking {diff:+.1%}" + ("; " + "; ".join(notes) if notes else "")
    return Check("timing", PASS if abs(diff) <= 0.02 else FAIL, detail)


def check_telemetry(device: torch.device) -> Check:
    if device.type != "cuda":
        from convbench.measure.disturbance import SchedstatProbe

        if SchedstatProbe.available():
            return Check("telemetry", PASS, "disturbance probe: /proc/self/task/*/schedstat")
        return Check("telemetry", SKIP, "no schedstat: disturbance from CPU time only")
    from convbench.measure.probes.nvml import NvmlSampler

    a = torch.randn(4096, 4096, device=device)
    with NvmlSampler(device, 0.01) as sampler:
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            a @ a
        torch.cuda.synchronize(device)
    t = sampler.telemetry
    fields = {
        "gpu_util_pct": t.gpu_util_pct,
        "power_w": t.power_w,
        "sm_clock_mhz": t.sm_clock_mhz,
        "energy_j": t.energy_j,
    }
    empty = [k for k, v in fields.items() if v is None]
    detail = ", ".join(f"{k} {v:.4g}" for k, v in fields.items() if v is not None)
    if empty:
        return Check("telemetry", FAIL, f"empty: {', '.join(empty)} ({t.note}); {detail}")
    return Check("telemetry", PASS, f"{t.n_samples} NVML polls: {detail}")


def check_sweep(device: torch.device, workdir: Path) -> tuple[Check, Check]:
    from convbench.measure.options import measure_options
    from convbench.problem.files import load_suite
    from convbench.report import write_report
    from convbench.runner.session import RunPlan, execute
    from convbench.store import Store

    path = workdir / "selftest.toml"
    path.write_text(SELFTEST_SUITE)
    db = workdir / "selftest.sqlite"
    filters = {"devices": [str(device)], "directions": ["forward", "backward"]}
    plan = RunPlan(load_suite(path), filters, measure_options(max_time_s=0.2, warmup_s=0.02))
    with Store(db) as store:
        result = execute(store, plan, "selftest", command="convbench selftest", progress=False)
        rows = store.result_rows("selftest")
    if result is None or result.interrupted:
        raise KeyboardInterrupt
    counts = {
        s: sum(r["status"] == s for r in rows)
        for s in ("ok", "unsupported", "error", "timeout", "oom")
    }
    bad = [r for r in rows if r["status"] in ("error", "timeout")]
    detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    status = PASS if counts["ok"] and not bad else FAIL
    if bad:
        detail += "; " + "; ".join(
            f"{r['backend']} {r['case_name']}: {r['reason']}" for r in bad[:3]
        )
    if device.type == "cuda":
        ok = [r for r in rows if r["status"] == "ok"]
        missing = sorted(
            {
                k
                for r in ok
                for k in ("gpu_util_pct", "power_w", "sm_clock_mhz", "energy_j")
                if r.get(k) is None
            }
        )
        if missing:
            status = FAIL
            detail += f"; telemetry columns empty: {', '.join(missing)}"
    sweep = Check("sweep", status, detail)
    try:
        out = write_report(db, ["selftest"], workdir / "selftest.html")
    except Exception as exc:
        return sweep, Check("report", FAIL, f"{type(exc).__name__}: {exc}")
    size = out.stat().st_size
    return sweep, Check("report", PASS if size > 10_000 else FAIL, f"{out} ({size / 1024:.0f} KiB)")


def selftest(
    device: str = "cpu",
    workdir: Path | None = None,
    on_check: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Run every check on ``device``; the sweep's store and report go to ``workdir``
    (default: a temporary directory that is kept, so the report can be opened)."""
    dev = torch.device(device)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="convbench-selftest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checks: list[Check] = []

    def record(check: Check) -> None:
        checks.append(check)
        if on_check:
            on_check(check)

    record(check_device(dev))
    if checks[0].status == FAIL:
        return checks
    steps = (
        ("conformance", check_conformance),
        ("timing", check_timing),
        ("telemetry", check_telemetry),
    )
    for name, step in steps:
        started = time.perf_counter()
        try:
            check = step(dev)
        except Exception as exc:  # a check that crashes fails; the others still run
            check = Check(name, FAIL, f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        record(Check(check.name, check.status, f"{check.detail} [{seconds:.0f} s]"))
    try:
        for check in check_sweep(dev, workdir):
            record(check)
    except Exception as exc:
        record(Check("sweep", FAIL, f"{type(exc).__name__}: {exc}"))
    return checks


def passed(checks: list[Check]) -> bool:
    return bool(checks) and not any(c.status == FAIL for c in checks)
