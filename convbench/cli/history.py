"""`convbench history`: every result of a store over its runs, and where it stepped.

For each case × backend × dtype × device × pass × layout measured on one host with one
thread count (`convbench.analysis.history`), the medians of every run that measured it, in the
order the runs were made — flagged medians marked ``!`` — and the change points found in the
unflagged ones (PELT), each as the first run after the step and the ratio across it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convbench.cli.common import csv_list
from convbench.store import DEFAULT_DB

#: Medians shown per series in the table (the latest ones).
SHOWN = 8


def add_parser(sub) -> None:
    p = sub.add_parser(
        "history",
        help="each result's medians over the store's runs, and the change points in them",
        description="For each case, backend, dtype, device, pass and layout on one host and "
        "thread count: the medians of every run (flagged ones marked !) and the steps found in "
        "them (PELT change points on the unflagged medians).",
    )
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--backends", type=csv_list, help="only these backends")
    p.add_argument("--case", help="only cases whose name contains this")
    p.add_argument("--changes", action="store_true", help="only the results that stepped")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_history)


def _medians(series) -> str:
    shown = series.tail(SHOWN)
    pairs = zip(shown.median_ms, shown.flagged, strict=True)
    cells = [f"{m:.4g}{'!' if f else ''}" for m, f in pairs]
    return ("… " if len(series) > SHOWN else "") + " ".join(cells)


def cmd_history(args: argparse.Namespace) -> int:
    from convbench.analysis.history import SERIES_KEYS, change_points, history
    from convbench.report.terminal import clean, move_constant_columns, print_tables
    from convbench.store.frames import load, open_results, runs

    store, owned = open_results(args.db)
    try:
        frame = history(load(store), runs(store))
    finally:
        if owned:
            store.close()
    if args.backends:
        frame = frame[frame["backend"].isin(args.backends)]
    if args.case:
        frame = frame[frame["case"].str.contains(args.case, regex=False)]
    found = []
    for key, series in frame.groupby(list(SERIES_KEYS), sort=False):
        changes = change_points(series)
        if args.changes and not changes:
            continue
        found.append((key, series, changes))
    if args.format == "json":
        out = [
            dict(
                zip(SERIES_KEYS, key, strict=True),
                runs=list(s.run_id),
                medians_ms=list(s.median_ms),
                flagged=list(s.flagged),
                changes=[
                    dict(run_id=c.run_id, before_ms=c.before_ms, after_ms=c.after_ms, ratio=c.ratio)
                    for c in changes
                ],
            )  # fmt: skip
            for key, s, changes in found
        ]
        print(json.dumps(clean(out), indent=2))
        return 0
    columns = ["host", "threads", "case", "dtype", "device", "pass", "layout", "backend"]
    columns += ["runs", f"medians [ms] (last {SHOWN}; ! flagged)", "change points"]
    rows = [
        [*map(str, key), str(len(s)), _medians(s),
         "; ".join(f"{c.run_id}: {c.ratio:.3g}×" for c in changes) or "—"]
        for key, s, changes in found
    ]  # fmt: skip
    note = (
        "change points: PELT on the log medians of the unflagged runs, a step of ≥3% standing "
        "out of the run-to-run noise; each named by the first run after it, with the ratio "
        "of the medians after and before"
    )
    title, columns, rows = move_constant_columns("history", columns, rows, (0, 1, 3, 4, 5, 6))
    print_tables([(title, columns, rows)], "table", note, text_columns=len(columns) - 3)
    return 0
