"""`convbench env` (what a run records about this machine) and `convbench backends`."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("env", help="print the environment a run would record")
    p.set_defaults(func=cmd_env)
    p = sub.add_parser("backends", help="list the registered convolution backends")
    p.set_defaults(func=cmd_backends)


def cmd_env(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from convbench.measure.envinfo import collect_env
    from convbench.report.format import format_env

    table = Table(title="environment", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")  # a commit or path whole, never cut
    for key, value in format_env(collect_env()):
        table.add_row(key, str(value))
    Console().print(table)
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from convbench.backends import backend_names, get_backend

    for name in backend_names():
        backend = get_backend(name)
        print(f"{name:10s} {backend.description}")
        print(f"{'':10s} gradients: {backend.backward_method}")
    return 0
