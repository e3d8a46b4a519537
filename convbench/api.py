"""The Python API for notebooks: `convbench.run` returns the results as a DataFrame.

    import convbench
    df = convbench.run("smoke", backends=["im2col", "winograd"], max_time=0.2)
    df.groupby("backend").median_ms.median()

It is `convbench run` without the terminal: the same suite expansion, the same isolated worker
process (`convbench.runner.Worker`) and sweep (`convbench.runner.sweep`), the same run record
(environment, config, peaks) and result rows, in an in-memory store unless ``db`` names one.

The worker is started with multiprocessing's ``spawn``, which normally re-imports the caller's
main module in the child: a script calling `run` at top level, without an
``if __name__ == "__main__":`` guard, would start a sweep of its own there, and code piped to
``python -`` cannot be re-imported at all. The worker runs only convbench code, so `run` hides
the main module from spawn while it sweeps (`_main_hidden_from_spawn`): `run` works the same
from a notebook, a script or a pipe.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from convbench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from convbench.measure import MeasureOptions
    from convbench.store import Store
    from convbench.suite import Suite

#: The `convbench run` flags' defaults (a test keeps the two in step).
DEFAULTS = {"warmup_s": 0.05, "min_samples": 10, "max_time_s": 1.0, "rel_ci": 0.01}


def measure_options(
    *,
    warmup_s: float = DEFAULTS["warmup_s"],
    min_samples: int = DEFAULTS["min_samples"],
    max_time_s: float = DEFAULTS["max_time_s"],
    rel_ci: float = DEFAULTS["rel_ci"],
    mode: str = "warm",
) -> MeasureOptions:
    """`MeasureOptions` exactly as `convbench run` builds them from its flags."""
    from convbench.measure import MeasureOptions
    from convbench.timing import TimingConfig

    try:
        timing = TimingConfig(
            warmup_s=warmup_s,
            min_samples=min_samples,
            max_time_s=max_time_s,
            rel_ci=rel_ci,
            mode=mode,
            max_samples=max(1000, min_samples),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return MeasureOptions(timing=timing)


@contextlib.contextmanager
def _main_hidden_from_spawn():
    """Keep multiprocessing's spawn from re-running ``__main__`` in the worker (see above):
    spawn re-imports the main module by ``__spec__`` name or ``__file__`` path, so both are
    hidden for the duration and restored after."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _as_suite(suite: str | Path | Suite) -> Suite:
    from convbench.suite import Suite, load_suite

    return suite if isinstance(suite, Suite) else load_suite(suite)


def _open_store(db: str | Path | Store | None) -> tuple[Store, bool]:
    from convbench.store import Store

    if isinstance(db, Store):
        return db, False
    return Store(db), True  # None: in memory


def run(
    suite: str | Path | Suite,
    backends: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    directions: Sequence[str] | None = None,
    batch_sizes: Sequence[int] | None = None,
    db: str | Path | Store | None = None,
    max_time: float = DEFAULTS["max_time_s"],
    mode: str = "warm",
    threads: int | None = None,
    progress: bool = False,
    *,
    warmup: float = DEFAULTS["warmup_s"],
    min_samples: int = DEFAULTS["min_samples"],
    rel_ci: float = DEFAULTS["rel_ci"],
    timeout: float | None = None,
) -> pd.DataFrame:
    """Sweep a suite as `convbench run` does and return this run's results as a DataFrame.

    ``suite``: a name (``suites/NAME.toml``), a path, or a `Suite` (e.g. from
    `convbench.from_model.suite_from_model`). ``backends``/``dtypes``/``devices``/
    ``directions``/``batch_sizes`` override the suite's axes like the CLI flags. ``db``: None
    keeps the results in memory; a path (created if missing) or an open `Store` keeps them
    there too. ``max_time``, ``mode``, ``threads``, ``warmup``, ``min_samples``, ``rel_ci`` and
    ``timeout`` are the CLI's ``--max-time``, ``--mode``, ... ``progress`` shows the CLI's
    progress bar on stderr.

    The frame has one row per task (columns as `convbench.results.load`); ``df.attrs`` holds
    ``run_id`` and ``interrupted`` (True if Ctrl-C stopped the sweep: the rows so far).
    """
    from rich.console import Console

    from convbench import results
    from convbench.commands.run import FILTERS, _measure_peaks, _sweep_with_progress
    from convbench.runner import Worker, new_run_id

    suite = _as_suite(suite)
    options = measure_options(
        warmup_s=warmup, min_samples=min_samples, max_time_s=max_time, rel_ci=rel_ci, mode=mode
    )
    if threads is not None and threads < 1:
        raise UserError(f"threads: expected a positive int, got {threads}")
    values = (backends, dtypes, devices, directions, batch_sizes)
    filters = {
        k: (list(v) if v is not None else None) for k, v in zip(FILTERS, values, strict=True)
    }
    tasks = suite.tasks(**filters)
    if not tasks:
        raise UserError(f"{suite.path or suite.name}: the filters leave no task to run")

    store, owned = _open_store(db)
    console = Console(stderr=True, quiet=not progress)
    run_id = new_run_id()
    worker = Worker(threads)
    try:
        with _main_hidden_from_spawn():
            env = worker.call(("env",), 120)
            suite_path = str(suite.path) if suite.path else None
            store.create_run(
                run_id,
                suite=suite.name,
                suite_path=suite_path,
                command=f"convbench.run({suite.name!r})",
                env=env,
                config={
                    "suite_path": suite_path,
                    "filters": filters,
                    "options": options.to_dict(),
                    "threads": threads,
                    "timeout_s": timeout,
                    "n_tasks": len(tasks),
                    "shard": None,
                    "executor": "local",
                    "cpus_per_task": None,
                },
            )
            store.set_run_peaks(run_id, _measure_peaks(worker, tasks, console))
            result = _sweep_with_progress(
                tasks,
                store,
                run_id,
                options,
                suite.name,
                worker,
                timeout,
                quiet=not progress,
                console=console,
                threads=threads,
            )
            store.set_run_status(run_id, "interrupted" if result.interrupted else "finished")
            df = results.load(store, run_id)
    finally:
        worker.stop()
        if owned:
            store.close()
    if result.interrupted:
        warnings.warn(f"run {run_id} interrupted: {len(df)} of {len(tasks)} tasks", stacklevel=2)
    df.attrs.update(run_id=run_id, interrupted=result.interrupted)
    return df
