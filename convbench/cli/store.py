"""Commands on result stores: `convbench runs`, `convbench export`, `convbench merge`."""

from __future__ import annotations

import argparse
from pathlib import Path

from convbench.store import DEFAULT_DB


def add_parser(sub) -> None:
    p = sub.add_parser("merge", help="combine result stores (e.g. shards) into one")
    p.add_argument("out", type=Path, help="output store (created if missing)")
    p.add_argument("inputs", type=Path, nargs="+", help="stores to merge in")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export", help="write results to CSV or Parquet")
    p.add_argument("--db", type=Path, default=DEFAULT_DB)
    p.add_argument("--run", help="one run id (default: every run)")
    p.add_argument("--format", choices=["csv", "parquet"], help="default: from --out's suffix")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("runs", help="list the runs in a store")
    p.add_argument("--db", type=Path, default=DEFAULT_DB)
    p.set_defaults(func=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from convbench.store.frames import runs

    df = runs(args.db)
    table = Table(title=str(args.db))
    for column in ("run_id", "suite", "status", "command"):
        table.add_column(column)
    for _, row in df.iterrows():
        table.add_row(row.run_id, row.suite, row.status, row.command)
    out = Console()
    out.print(table)
    for run_id in df.loc[df["status"].isin(["stale", "interrupted"]), "run_id"]:
        out.print(
            f"finish {run_id} with: convbench run --db {args.db} --resume {run_id}",
            soft_wrap=True,  # a command to copy: never wrapped
        )
    stale = df["status"].eq("stale")
    if stale.any():
        out.print("stale: the process running it is gone (killed); nothing is measuring it")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from convbench.store.frames import export

    path = export(args.db, args.out, args.format, args.run)
    print(path)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from convbench.store.merge import merge

    added = merge(args.out, args.inputs)
    print(
        f"{args.out}: +{added['runs']} runs, +{added['results']} results "
        f"({added['duplicates']} duplicates skipped), +{added['samples']} sample sets"
    )
    return 0
