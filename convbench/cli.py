"""The `convbench` command: argparse + rich. Each subcommand is a thin edge over pure code."""

from __future__ import annotations

import argparse
import sys

from convbench.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convbench",
        description="Benchmark and profile convolution algorithms on PyTorch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("backends", help="list the registered convolution backends")
    p.set_defaults(func=cmd_backends)
    return parser


def cmd_backends(args: argparse.Namespace) -> int:
    from convbench.backends import backend_names, get_backend

    for name in backend_names():
        print(f"{name:10s} {get_backend(name).description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except UserError as exc:
        print(f"convbench: error: {exc}", file=sys.stderr)
        return 2
