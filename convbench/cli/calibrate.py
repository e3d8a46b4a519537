"""`convbench calibrate`: how well this machine times, measured by the harness itself."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="timing overheads and the smallest reliably timed kernel")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from convbench.measure.calibrate import calibrate

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
