"""`convbench selftest`: prove a machine (a GPU host above all) works before trusting a sweep."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "selftest",
        help="check a device end to end: conformance, timing, telemetry, a sweep and a report",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--dir", type=Path, help="where the sweep's store and report go (default: a temp dir)"
    )
    p.set_defaults(func=cmd_selftest)


def cmd_selftest(args: argparse.Namespace) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from convbench.flows.selftest import FAIL, PASS, passed, selftest

    console = Console()
    marks = {PASS: "[green]PASS[/]", FAIL: "[red]FAIL[/]"}

    def show(check) -> None:
        mark = marks.get(check.status, "[yellow]SKIP[/]")
        console.print(f"{mark} {check.name}: {check.detail}", highlight=False, soft_wrap=True)

    console.print(f"convbench selftest on {args.device}")
    checks = selftest(args.device, args.dir, on_check=show)
    table = Table(box=box.SIMPLE_HEAD, title="summary", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in checks:
        table.add_row(check.name, marks.get(check.status, "[yellow]SKIP[/]"), check.detail)
    console.print(table)
    n_pass = sum(c.status == PASS for c in checks)
    n_fail = sum(c.status == FAIL for c in checks)
    console.print(
        f"selftest {'passed' if passed(checks) else 'FAILED'}: {n_pass} passed, {n_fail} failed, "
        f"{len(checks) - n_pass - n_fail} skipped"
    )
    return 0 if passed(checks) else 1
