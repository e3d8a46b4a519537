"""The `convbench` command. Each subcommand module of this package defines its own parser
(``add_parser``) and handler; `main` only builds the parser from them and runs the handler.

Subcommand modules import only argparse-level code at the top (the heavy imports live in the
handlers), so `convbench --help` does not load torch. A `UserError` anywhere (bad suite,
unknown backend, missing run) is printed as one line on stderr with exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from convbench.errors import UserError

#: Subcommand modules, in the order `convbench --help` lists their commands.
COMMANDS = (
    "run",
    "calibrate",
    "selftest",
    "store",
    "suite",
    "info",
    "report",
    "compare",
    "history",
    "tune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convbench",
        description="Benchmark and profile convolution algorithms on PyTorch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"convbench.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["convbench", *argv])
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"convbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a sweep (a sweep handles its own)
        print("convbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
