"""Small read-only commands: suites, env, backends, runs, export."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def cmd_suites(args: argparse.Namespace) -> int:
    from convbench.suite import list_suites

    table = Table(title="suites")
    for column in ("name", "cases", "layers", "description"):
        table.add_column(column)
    for info in list_suites(args.dir):
        table.add_row(
            info.name, str(info.n_cases), str(getattr(info, "n_layers", "")), info.description
        )
    Console().print(table)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from convbench.envinfo import collect_env, format_env

    table = Table(title="environment", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in format_env(collect_env()):
        table.add_row(key, str(value))
    Console().print(table)
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from convbench.backends import backend_names, get_backend

    for name in backend_names():
        print(f"{name:10s} {get_backend(name).description}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from convbench.results import runs

    df = runs(args.db)
    table = Table(title=str(args.db))
    for column in ("run_id", "suite", "status", "command"):
        table.add_column(column)
    for _, row in df.iterrows():
        table.add_row(row.run_id, row.suite, row.status, row.command)
    Console().print(table)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from convbench.results import export

    path = export(args.db, args.out, args.format, args.run)
    print(path)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from convbench.merge import merge

    added = merge(args.out, args.inputs)
    print(
        f"{args.out}: +{added['runs']} runs, +{added['results']} results "
        f"({added['duplicates']} duplicates skipped), +{added['samples']} sample sets"
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import torch

    from convbench.calibrate import calibrate

    if args.threads:
        torch.set_num_threads(args.threads)
    cal = calibrate(args.device)
    console = Console()
    console.print(
        f"{cal.device}, {cal.threads} threads: clock overhead {cal.clock_overhead_ns:.0f} ns "
        f"per reading; timing overhead per call (empty function) {cal.empty_call_ns:.0f} ns"
    )
    table = Table(title="measured median vs plain back-to-back average")
    for column in ("kernel (conv2d)", "reference ms", "measured ms", "difference"):
        table.add_column(column, justify="right")
    for rung in cal.rungs:
        mark = "" if abs(rung.rel_diff) <= cal.tolerance else " ✗"
        table.add_row(
            rung.label,
            f"{rung.reference_ms:.5f}",
            f"{rung.measured_ms:.5f}",
            f"{rung.rel_diff:+.1%}{mark}",
        )
    console.print(table)
    smallest = cal.smallest_within_ms
    console.print(
        f"smallest kernel measured within ±{cal.tolerance:.0%}: "
        + (f"{smallest * 1e3:.1f} µs" if smallest is not None else "none")
    )
    return 0
