"""The `convbench` command: argparse + rich. Each subcommand is a thin edge over pure code.

A `UserError` anywhere (bad suite, unknown backend, missing run) is printed as one line on
stderr with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from convbench.errors import UserError
from convbench.store import DEFAULT_DB


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convbench",
        description="Benchmark and profile convolution algorithms on PyTorch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="sweep a suite and store the results")
    p.add_argument("suite", nargs="?", help="suite name (suites/NAME.toml) or path to a TOML file")
    p.add_argument("--backends", type=_csv, help="comma-separated backends (default: suite's)")
    p.add_argument("--dtypes", type=_csv, help="e.g. float32,float16,bfloat16,float64")
    p.add_argument("--devices", type=_csv, help="e.g. cpu,cuda:0")
    p.add_argument("--directions", type=_csv, help="forward,backward")
    p.add_argument("--batch-sizes", type=_ints, help="override every case's batch, e.g. 1,8")
    p.add_argument(
        "--mode",
        choices=["warm", "cold"],
        default="warm",
        help="cold flushes the cache before every sample (default: warm)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=1.0,
        metavar="S",
        help="per-case cap on the sampling phase in seconds (default: 1.0)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=0.05,
        metavar="S",
        help="warmup time per case in seconds (default: 0.05)",
    )
    p.add_argument("--min-samples", type=int, default=10)
    p.add_argument(
        "--rel-ci",
        type=float,
        default=0.01,
        help="stop when the median's 95%% CI is within ±this (default: 0.01)",
    )
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="per-task limit before the worker is killed (default: generous)",
    )
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--resume", metavar="RUN_ID", help="finish a stopped run without redoing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_lazy("convbench.commands.run", "cmd_run"))

    p = sub.add_parser("suites", help="list the suites with their case counts")
    p.add_argument("--dir", type=Path, help="folder of suite files (default: ./suites)")
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_suites"))

    p = sub.add_parser("env", help="print the environment a run would record")
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_env"))

    p = sub.add_parser("backends", help="list the registered convolution backends")
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_backends"))

    p = sub.add_parser("export", help="write results to CSV or Parquet")
    p.add_argument("--db", type=Path, default=DEFAULT_DB)
    p.add_argument("--run", help="one run id (default: every run)")
    p.add_argument("--format", choices=["csv", "parquet"], help="default: from --out's suffix")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_export"))

    p = sub.add_parser("runs", help="list the runs in a store")
    p.add_argument("--db", type=Path, default=DEFAULT_DB)
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_runs"))
    return parser


def _lazy(module: str, name: str):
    """Import a subcommand's module only when it runs, so `convbench --help` is instant."""

    def call(args):
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return call


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
