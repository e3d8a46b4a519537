"""Results as pandas DataFrames: the read side of the store, for the CLI, reports and notebooks.

    import convbench.results
    df = convbench.results.load("results/convbench.sqlite")            # every run
    df = convbench.results.load("results/convbench.sqlite", run="20261128-...")

One row per (run, case, backend, device, dtype, direction), with a ``status``
(ok / unsupported / oom / error / timeout) and a ``reason``. Timing columns are per call in
milliseconds; with ``samples=True``, ``samples_ms`` holds the raw per-call samples the
statistics use, ``rounds`` the interleaved round of each, ``discarded_ms`` the disturbed
samples kept apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from convbench.errors import UserError
from convbench.store.columns import BEFORE, FRAME_RENAMES, frame_dtypes
from convbench.store.schema import RESULT_FIELDS
from convbench.store.sqlite import Store

#: Result columns named differently in the frames (from the registry).
COLUMN_RENAMES = FRAME_RENAMES


def open_results(db: str | Path | Store) -> tuple[Store, bool]:
    """The store ``db`` names (an open `Store` as it is), and whether the caller owns it
    (must close it): a path must name an existing store."""
    if isinstance(db, Store):
        return db, False
    return Store.open_existing(db), True


def load(
    db: str | Path | Store,
    run: str | Sequence[str] | None = None,
    *,
    samples: bool = False,
) -> pd.DataFrame:
    """All results of ``run`` (an id, a list of ids, or None for every run) as a DataFrame.

    Columns include run_id, suite, case, backend, device, dtype, direction, status, reason,
    median_ms, iqr_ms, ci_low_ms, ci_high_ms, n_samples, gflops, peak_mem_bytes, max_abs_err,
    rel_err, gpu_util_pct, power_w, energy_j: every stored column of the registry
    (`convbench.store.columns`; docs/metrics.md), with its dtype.
    """
    store, owned = open_results(db)
    try:
        runs = [run] if isinstance(run, str) else list(run) if run is not None else [None]
        rows: list[dict] = []
        for run_id in runs:
            if run_id is not None:
                store.run(run_id)  # raises a UserError naming the known runs
            rows += store.result_rows(run_id)
        df = pd.DataFrame(rows, columns=list(RESULT_FIELDS))
        if samples:
            found = store.all_samples()
            keys = list(zip(df.run_id, df.result_key, strict=True))
            for column, empty in (("samples_ms", []), ("rounds", None), ("discarded_ms", None)):
                df[column] = [found.get(key, {}).get(column, empty) for key in keys]
        df = df.rename(columns=COLUMN_RENAMES).astype(frame_dtypes())
        return df.fillna(BEFORE) if len(df) else df
    finally:
        if owned:
            store.close()


def runs(db: str | Path | Store) -> pd.DataFrame:
    """One row per run: id, suite, status, times, command."""
    store, owned = open_results(db)
    try:
        records = [store.run(r) for r in store.run_ids()]
        columns = ["run_id", "suite", "status", "created_at", "finished_at", "command"]
        return pd.DataFrame([{c: rec[c] for c in columns} for rec in records], columns=columns)
    finally:
        if owned:
            store.close()


def export(db: str | Path, out: str | Path, fmt: str | None = None, run: str | None = None) -> Path:
    """Write the results table to CSV or Parquet (by ``fmt`` or the file's suffix)."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "parquet"):
        raise UserError(f"--format: expected csv or parquet, got {fmt!r}")
    df = load(db, run)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    return out
