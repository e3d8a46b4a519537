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


def _percent(value: str) -> float:
    """``'5%'`` or ``'5'`` -> 0.05."""
    try:
        number = float(value.strip().removesuffix("%"))
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 5%, got {value!r}")
    return number / 100.0


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
    p.add_argument("--report", action="store_true", help="write the HTML report at the end")
    p.add_argument("--open", action="store_true", help="write the report and open it")
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="run only the K-th of N balanced parts (1 <= K <= N), e.g. for job arrays",
    )
    p.add_argument("--run-id", help="use this run id (e.g. shared by the shards of one sweep)")
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: one worker process per device; ray: tasks on a Ray cluster",
    )
    p.add_argument("--address", help="Ray cluster address (default: start a local one)")
    p.add_argument(
        "--cpus-per-task",
        type=int,
        help="Ray: CPUs (and torch threads) per CPU task (default: --threads or 1)",
    )
    p.set_defaults(func=_lazy("convbench.commands.run", "cmd_run"))

    p = sub.add_parser("calibrate", help="timing overheads and the smallest reliably timed kernel")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_calibrate"))

    p = sub.add_parser("merge", help="combine result stores (e.g. shards) into one")
    p.add_argument("out", type=Path, help="output store (created if missing)")
    p.add_argument("inputs", type=Path, nargs="+", help="stores to merge in")
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_merge"))

    p = sub.add_parser("suites", help="list the suites with their case counts")
    p.add_argument("--dir", type=Path, help="folder of suite files (default: ./suites)")
    p.set_defaults(func=_lazy("convbench.commands.info", "cmd_suites"))

    from convbench.commands import suite_cmd  # argparse only; the tracing code loads lazily

    suite_cmd.add_parser(sub)

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

    p = sub.add_parser("report", help="write one self-contained HTML report of runs")
    p.add_argument("runs", nargs="*", metavar="RUN_ID", help="runs side by side (default: latest)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--out", type=Path, help="HTML file (default: reports/RUN_ID.html)")
    p.add_argument("--open", action="store_true", help="open it in a browser")
    p.set_defaults(func=_lazy("convbench.commands.report", "cmd_report"))

    p = sub.add_parser(
        "compare",
        help="backends within a run (--backends), or two runs (RUN_A RUN_B)",
        description="One run (default: latest): per-case speedups of --backends over "
        "--baseline and per-backend geometric means, `~` marking differences not significant. "
        "Two runs: each matched result faster/slower/same/ambiguous; exit 1 on a significant "
        "regression beyond --fail-on-regression.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN_ID", help="one run, or RUN_A RUN_B")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--backends", type=_csv, help="backends to show (default: all measured)")
    p.add_argument(
        "--baseline",
        help="speedups against this backend (default: the device's "
        "vendor backend: onednn on cpu, cudnn on cuda)",
    )
    p.add_argument(
        "--fail-on-regression",
        type=_percent,
        metavar="PCT",
        help="two runs: exit 1 if a result is significantly slower by more than "
        "PCT (e.g. 5%%); also the band of `same`",
    )
    p.add_argument(
        "--threshold",
        type=_percent,
        default=0.05,
        metavar="PCT",
        help="two runs: changes within ±PCT count as the same (default: 5%%)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.set_defaults(func=_lazy("convbench.commands.compare", "cmd_compare"))
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
    except KeyboardInterrupt:  # Ctrl-C outside a sweep (a sweep handles its own)
        print("convbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
