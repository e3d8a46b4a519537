"""`convbench calibrate --interference`: how far a busy neighbour moves this machine's numbers.

The suite (the smoke suite's forward tasks by default) is measured three times by each of
three methods — convbench as `convbench run` does it, convbench with ``--no-interleave``, and
``torch.utils.benchmark``'s ``adaptive_autorange`` (`convbench.measure.torch_timer`) — first
quiet, then quiet again, then under the standard disturbance (`convbench.measure.load`). The
first quiet medians are the truth; `convbench.analysis.agreement` says how the second quiet
run and the disturbed run agree with them, and how many of the gross misses (> 10 %) the
measurement flagged itself (``disturbed``). Every convbench pass runs in a fresh worker
process, exactly as a sweep does, and each method's three passes use the same tasks. The
first quiet pass's median pace reading (`convbench.measure.pace`) is the usual pace of the
later ones, as a store's history is for `convbench run`: a pass the host ran at another
speed is flagged off-pace.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from convbench.analysis.agreement import Agreement, agreement, at_equal_pace, relative
from convbench.backends import backend_names
from convbench.measure.load import BurstLoad
from convbench.measure.options import MeasureOptions, measure_options
from convbench.problem.files import load_suite
from convbench.problem.suite import Task

CONDITIONS = ("quiet", "quiet again", "burst load")
METHODS = ("convbench", "convbench --no-interleave", "torch.utils.benchmark")


@dataclass
class Pass:
    medians: dict[str, float]
    flagged: set[str] = field(default_factory=set)
    seconds: float = 0.0  # the sweep's wall time (first task started → last finished)
    #: The reference kernel's median reading (µs) while each task was measured
    #: (`convbench.measure.pace`); empty for torch.utils.benchmark.
    pace_us: dict[str, float] = field(default_factory=dict)

    @property
    def host_pace_us(self) -> float | None:
        """The pass's median reading: how fast the host ran the reference kernel then."""
        return statistics.median(self.pace_us.values()) if self.pace_us else None


@dataclass
class InterferenceReport:
    suite: str
    n_tasks: int
    threads: int | None
    load: str
    passes: dict[tuple[str, str], Pass]

    groups: dict[str, tuple] = field(default_factory=dict)  # task key -> its case group

    def agreement(
        self,
        method: str,
        condition: str,
        ratios: bool = False,
        unflagged: bool = False,
        at_pace: bool = False,
    ) -> Agreement:
        """Medians against the first quiet run's; ``ratios``: each backend's median relative
        to its case (`convbench.analysis.agreement.relative`) instead; ``unflagged``: only
        the results the pass did not flag; ``at_pace``: each median scaled by the host's
        pace then (`convbench.analysis.agreement.at_equal_pace`)."""
        truth = self.passes[(method, "quiet")]
        other = self.passes[(method, condition)]
        if at_pace:
            return agreement(
                truth.medians,
                at_equal_pace(other.medians, other.pace_us, truth.pace_us),
                other.flagged,
            )
        if unflagged:
            kept = {k: v for k, v in other.medians.items() if k not in other.flagged}
            return agreement(truth.medians, kept)
        if ratios:
            return agreement(
                relative(truth.medians, self.groups),
                relative(other.medians, self.groups),
                other.flagged,
            )
        return agreement(truth.medians, other.medians, other.flagged)


def _sweep(tasks: Sequence[Task], options: MeasureOptions, threads: int | None) -> Pass:
    from convbench.runner.sweep import Execution, Recorder, sweep
    from convbench.store import Store

    with Store(None) as store:
        recorder = Recorder(store, "interference", "interference")
        result = sweep(tasks, recorder, options, Execution(threads=threads))
        if result.interrupted:
            raise KeyboardInterrupt
        rows = store.result_rows("interference")
    ok = [r for r in rows if r["status"] == "ok" and r["median_ms"]]
    seconds = max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)
    return Pass(
        medians={r["result_key"]: r["median_ms"] for r in ok},
        flagged={r["result_key"] for r in ok if r.get("disturbed")},
        seconds=seconds,
        pace_us={r["result_key"]: r["pace_us"] for r in ok if r.get("pace_us")},
    )


def _torch_timer(tasks, options, threads, max_run_time_s) -> Pass:
    from convbench.runner.worker import Worker

    worker = Worker(threads)
    started = time.time()
    try:
        medians = worker.call(("torch_timer", list(tasks), options, max_run_time_s), 3600)
    finally:
        worker.stop()
    return Pass(medians=medians, seconds=time.time() - started)


def interference(
    suite: str = "smoke",
    directions: Sequence[str] = ("forward",),
    backends: Sequence[str] | None = None,
    threads: int | None = None,
    load: BurstLoad | None = None,
    methods: Sequence[str] = METHODS,
    on_pass: Callable[[str, str], None] | None = None,
) -> InterferenceReport:
    """Measure ``suite`` per method and condition (see the module doc)."""
    loaded = load_suite(suite)
    tasks = loaded.tasks(registered=backend_names(), directions=list(directions), backends=backends)
    load = load or BurstLoad()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; known: {', '.join(METHODS)}")
    options = {
        "convbench": measure_options(),
        "convbench --no-interleave": measure_options(interleave=False),
    }
    # the yardstick gets the time convbench may spend on one task
    yardstick = measure_options()
    passes: dict[tuple[str, str], Pass] = {}
    for condition in CONDITIONS:
        with load if condition == "burst load" else contextlib.nullcontext():
            for method in methods:
                if on_pass:
                    on_pass(method, condition)
                if method == "torch.utils.benchmark":
                    found = _torch_timer(tasks, yardstick, threads, yardstick.timing.max_time_s)
                else:
                    found = _sweep(tasks, options[method], threads)
                    if condition == "quiet":  # later passes judge their pace against it
                        options[method] = replace(options[method], usual_pace_us=found.host_pace_us)
                passes[(method, condition)] = found
    from convbench.measure.groups import group_key

    groups = {t.key: group_key(t) for t in tasks}
    return InterferenceReport(loaded.name, len(tasks), threads, load.describe(), passes, groups)
