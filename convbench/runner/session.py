"""A run from start to end: create the run record (environment, configuration), measure the
roofline's peaks, sweep the tasks, mark the run finished or interrupted.

`convbench run` and `convbench.run` are both thin layers over `RunPlan` and `execute`, so the
command line and the notebook API make the same records from the same defaults.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

from rich.console import Console

from convbench.analysis.roofline import bandwidth_key
from convbench.backends import backend_names
from convbench.errors import UserError
from convbench.measure.options import MeasureOptions
from convbench.problem.files import load_suite
from convbench.problem.shard import shard_tasks
from convbench.problem.suite import Suite, Task
from convbench.runner.progress import sweep_progress
from convbench.runner.recorder import Recorder, SweepResult
from convbench.runner.remeasure import remeasure, task_s
from convbench.runner.sweep import Execution, sweep
from convbench.runner.worker import Worker
from convbench.store import Store

#: The task filters a run accepts (CLI flags, API arguments), each overriding a suite axis.
FILTERS = ("backends", "dtypes", "devices", "directions", "batch_sizes", "layouts")
#: The default budget of the re-measure pass, in seconds (`RunPlan.remeasure_s`); the pass
#: also takes at most `SHARE` of the sweep's own time (but `MIN_REMEASURE_S` at least).
DEFAULT_REMEASURE_S = 60.0
SHARE = 0.25
MIN_REMEASURE_S = 5.0


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class RunPlan:
    """Everything that decides what a run measures and how; stored with the run, so that
    ``--resume`` measures the rest exactly as the start did."""

    suite: Suite
    filters: dict = field(default_factory=dict)
    options: MeasureOptions = field(default_factory=MeasureOptions)
    threads: int | None = None
    timeout_s: float | None = None
    shard: tuple[int, int] | None = None
    executor: str = "local"
    cpus_per_task: int | None = None
    pack: bool = False  # Ray: several CPU tasks per node on disjoint cores
    #: Seconds the flagged results may take to be measured again at the end (0: never;
    #: `convbench.runner.remeasure`).
    remeasure_s: float = DEFAULT_REMEASURE_S

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads: expected a positive int, got {self.threads}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise UserError(f"--timeout: expected a number of seconds > 0, got {self.timeout_s:g}")
        if not self.remeasure_s >= 0:
            raise UserError(
                f"--remeasure-time: expected a number of seconds >= 0, got {self.remeasure_s:g}"
            )
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise UserError(f"--cpus-per-task: expected a positive int, got {self.cpus_per_task}")

    def tasks(self) -> list[Task]:
        """The suite's tasks after the filters and the shard; a UserError if none is left."""
        tasks = self.suite.tasks(
            registered=backend_names(),
            unlisted=backend_names(unlisted=True),
            **{k: self.filters.get(k) for k in FILTERS},
        )
        if not tasks:
            raise UserError(f"{self.suite.path or self.suite.name}: the filters leave no task")
        return shard_tasks(tasks, *self.shard) if self.shard else tasks

    def execution(self, address: str | None = None) -> Execution:
        """How the sweep runs the plan's tasks (``address``: a Ray cluster's)."""
        return Execution(
            kind=self.executor,
            threads=self.threads,
            timeout_s=self.timeout_s,
            address=address,
            cpus_per_task=self.cpus_per_task,
            pack=self.pack,
        )

    def config(self, n_tasks: int) -> dict:
        suite_path = str(self.suite.path) if self.suite.path else None
        return {
            "suite_path": suite_path,
            "filters": {k: self.filters.get(k) for k in FILTERS},
            "options": self.options.to_dict(),
            "threads": self.threads,
            "timeout_s": self.timeout_s,
            "n_tasks": n_tasks,
            "shard": list(self.shard) if self.shard else None,
            "executor": self.executor,
            "cpus_per_task": self.cpus_per_task,
            "pack": self.pack,
            "remeasure_s": self.remeasure_s,
        }

    @classmethod
    def from_record(cls, record: dict, suite: str | None = None) -> RunPlan:
        """The plan a stored run was started with (``suite`` overrides where its file is)."""
        config = record["config"]
        shard = config.get("shard")
        return cls(
            suite=load_suite(suite or config["suite_path"]),
            filters=config["filters"],
            options=MeasureOptions.from_dict(config["options"]),
            threads=config.get("threads"),
            timeout_s=config.get("timeout_s"),
            shard=tuple(shard) if shard else None,
            executor=config.get("executor", "local"),
            cpus_per_task=config.get("cpus_per_task"),
            pack=config.get("pack", False),
            remeasure_s=config.get("remeasure_s", DEFAULT_REMEASURE_S),
        )


def measure_peaks(
    worker: Worker, tasks: list[Task], warn: Callable[[str], None]
) -> dict[str, float | None]:
    """The roofline's ceilings, measured by the worker with the run's thread settings (see
    `convbench.measure.peak`): a GEMM's GFLOP/s once per (device, dtype) of the run, and a
    copy's memory bandwidth once per device (`convbench.analysis.roofline.bandwidth_key`)."""
    peaks: dict[str, float | None] = {}
    for device, dtype in sorted({(t.device, t.dtype) for t in tasks}):
        gflops, why_not = worker.call(("peak", device, dtype), 300)
        peaks[f"{device}/{dtype}"] = gflops
        if why_not:
            warn(f"[yellow]no peak GFLOP/s for {device}/{dtype}[/]: {why_not}")
    for device in sorted({t.device for t in tasks}):
        gbs, why_not = worker.call(("bandwidth", device), 300)
        peaks[bandwidth_key(device)] = gbs
        if why_not:
            warn(f"[yellow]no memory bandwidth for {device}[/]: {why_not}")
    return peaks


class _Lent:
    """The caller's worker, lent to a sweep: the sweep may kill it (Ctrl-C, a timeout) but
    does not stop it when done, so the re-measure pass after it finds it still running
    instead of paying a second start-up (imports, thread pools). The caller stops it."""

    def __init__(self, worker):
        self._worker = worker

    def __getattr__(self, name: str):
        return getattr(self._worker, name)

    def stop(self) -> None:
        pass


def _first_then(first, make: Callable[[], object]) -> Callable[[], object]:
    """A worker factory that lends ``first`` (`_Lent`), then makes new workers with ``make``."""
    given = [_Lent(first)]
    return lambda: given.pop() if given else make()


def execute(
    store: Store,
    plan: RunPlan,
    run_id: str,
    *,
    command: str,
    resume: bool = False,
    console: Console | None = None,
    progress: bool = True,
    address: str | None = None,
    workers: Callable[[], object] | None = None,
) -> SweepResult | None:
    """Create the run (unless resuming), measure its peaks once, sweep what is not stored yet,
    measure the flagged results again within ``plan.remeasure_s``
    (`convbench.runner.remeasure`), and set its status. Returns the sweep's result, or None
    when Ctrl-C came before the sweep began (then nothing of a new run was stored).
    ``workers`` makes the measuring processes (default: `Worker` with the plan's threads);
    the first one made also serves the sweep's first device."""
    console = console or Console(stderr=True, quiet=not progress)
    tasks = plan.tasks()
    if not resume and run_id in store.run_ids():
        raise UserError(f"{store.path}: run {run_id!r} already exists; finish it with --resume")
    if resume:
        store.claim_run(run_id)  # refused while another process still runs it
    make = workers or partial(Worker, plan.threads)
    worker = make()
    result = None
    try:
        if not resume:
            store.create_run(
                run_id,
                suite=plan.suite.name,
                suite_path=str(plan.suite.path) if plan.suite.path else None,
                command=command,
                env=worker.call(("env",), 120),
                config=plan.config(len(tasks)),
            )
        options = plan.options
        if plan.executor == "local" and plan.threads and options.usual_pace_us is None:
            usual = store.usual_pace_us(socket.gethostname(), plan.threads, exclude_run=run_id)
            options = replace(options, usual_pace_us=usual)
        if plan.executor == "local" and not store.run(run_id)["peaks"]:
            store.set_run_peaks(run_id, measure_peaks(worker, tasks, console.print))
        hand_out = _first_then(worker, make)
        began = time.time()
        execution = plan.execution(address)
        if not progress:
            recorder = Recorder(store, run_id, plan.suite.name)
            result = sweep(tasks, recorder, options, execution, workers=hand_out)
        else:
            done = len(store.finished_keys(run_id) & {t.key for t in tasks})
            with sweep_progress(console, len(tasks), done) as bar:
                recorder = Recorder(store, run_id, plan.suite.name, bar.on_result)
                result = sweep(
                    tasks, recorder, options, execution, workers=hand_out, on_start=bar.on_start
                )
                bar.finish(result.interrupted)
        if not result.interrupted and plan.remeasure_s > 0 and plan.executor == "local":
            swept = time.time() - began
            if resume:  # the run's sweep was done before: its share is of the sweep as budgeted
                swept = max(swept, task_s(options) * len(tasks))
            budget = min(plan.remeasure_s, max(MIN_REMEASURE_S, SHARE * swept))
            result.remeasured = again = remeasure(
                store, run_id, plan.suite.name, tasks, options, execution, budget,
                _first_then(worker, make),
            )  # fmt: skip
            if again.line():
                console.print(again.line(), markup=False, highlight=False)
    except KeyboardInterrupt:
        result = None  # Ctrl-C before the sweep began (start-up, environment, GEMM peak)
    finally:
        worker.stop()
    if run_id in store.run_ids():
        interrupted = result is None or result.interrupted
        store.set_run_status(run_id, "interrupted" if interrupted else "finished")
    return result
