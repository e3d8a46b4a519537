"""The Python API for notebooks: `convbench.run` returns the results as a DataFrame.

    import convbench
    df = convbench.run("smoke", backends=["im2col", "winograd"], max_time=0.2)
    df.groupby("backend").median_ms.median()

It is `convbench run` without the terminal: the same suite expansion, the same isolated worker
process and sweep (`convbench.runner.session.execute`, shared with the CLI), the same run record
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
from typing import TYPE_CHECKING, Any

from convbench.errors import UserError
from convbench.measure.options import DEFAULTS, check_keywords, from_user

if TYPE_CHECKING:
    import pandas as pd

    from convbench.problem.suite import Suite
    from convbench.store import Store


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
    from convbench.problem import Suite, load_suite

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
    mode: str = DEFAULTS["mode"],
    threads: int | None = None,
    progress: bool = False,
    *,
    layouts: Sequence[str] | None = None,
    timeout: float | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Sweep a suite as `convbench run` does and return this run's results as a DataFrame.

    ``suite``: a name (``suites/NAME.toml``), a path, or a `Suite` (e.g. from
    `convbench.suite_from_model`). ``backends``/``dtypes``/``devices``/``directions``/
    ``batch_sizes``/``layouts`` override the suite's axes like the CLI flags. ``db``: None keeps the
    results in memory; a path (created if missing) or an open `Store` keeps them there too.
    ``threads`` and ``timeout`` are the CLI's ``--threads`` and ``--timeout``; ``max_time``,
    ``mode`` and the other keyword ``options`` are the measurement options
    (`convbench.measure.options.OPTIONS`: ``warmup``, ``min_samples``, ``rel_ci``,
    ``max_lost``, ``max_pace``, ``interleave``, ``cuda_timing``, ``cold_inputs``), each the
    CLI's flag of that name (``interleave=False`` is ``--no-interleave``); an unknown keyword
    is a TypeError naming the known ones. ``progress`` shows the CLI's progress bar
    on stderr.

    The frame has one row per task (columns as `convbench.results.load`); ``df.attrs`` holds
    ``run_id`` and ``interrupted`` (True if Ctrl-C stopped the sweep: the rows so far).
    """
    from convbench.runner.session import FILTERS, RunPlan, execute, new_run_id
    from convbench.store.frames import load

    check_keywords(options, "convbench.run")
    try:
        measure = from_user(options | {"max_time": max_time, "mode": mode})
    except ValueError as exc:
        raise UserError(str(exc)) from None
    values = (backends, dtypes, devices, directions, batch_sizes, layouts)
    filters = {
        k: (list(v) if v is not None else None) for k, v in zip(FILTERS, values, strict=True)
    }
    suite = _as_suite(suite)
    plan = RunPlan(suite, filters, measure, threads=threads, timeout_s=timeout)
    n_tasks = len(plan.tasks())
    store, owned = _open_store(db)
    run_id = new_run_id()
    try:
        with _main_hidden_from_spawn():
            result = execute(
                store, plan, run_id, command=f"convbench.run({suite.name!r})", progress=progress
            )
        df = load(store, run_id) if run_id in store.run_ids() else load(store, [])
    finally:
        if owned:
            store.close()
    interrupted = result is None or result.interrupted
    if interrupted:
        warnings.warn(f"run {run_id} interrupted: {len(df)} of {n_tasks} tasks", stacklevel=2)
    df.attrs.update(run_id=run_id, interrupted=interrupted)
    return df
