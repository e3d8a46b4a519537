"""`convbench run`: expand a suite, sweep it in a worker process, store every result."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

from convbench.cli.common import csv_list, int_list
from convbench.errors import UserError
from convbench.measure.options import DEFAULTS, add_arguments, from_user
from convbench.store import DEFAULT_DB, STATUSES, Store

if TYPE_CHECKING:
    from rich.console import Console

    from convbench.runner.session import RunPlan


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="sweep a suite and store the results")
    p.add_argument("suite", nargs="?", help="suite name (suites/NAME.toml) or path to a TOML file")
    p.add_argument("--backends", type=csv_list, help="comma-separated backends (default: suite's)")
    p.add_argument("--dtypes", type=csv_list, help="e.g. float32,float16,bfloat16,float64")
    p.add_argument("--devices", type=csv_list, help="e.g. cpu,cuda:0")
    p.add_argument("--directions", type=csv_list, help="forward,backward")
    p.add_argument("--batch-sizes", type=int_list, help="override every case's batch, e.g. 1,8")
    p.add_argument(
        "--layouts",
        type=csv_list,
        help="memory formats: contiguous,channels_last (default: suite's)",
    )
    add_arguments(p)  # the measurement options (`convbench.measure.options`)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="per-task limit in seconds before the worker is killed (default: 120 + 4 × "
        "(warmup + max-time + 0.25), "
        f"{120 + 4 * (DEFAULTS['warmup_s'] + DEFAULTS['max_time_s'] + 0.25):.0f} with the "
        "defaults)",
    )
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--resume", metavar="RUN_ID", help="finish a stopped run without redoing")
    p.add_argument(
        "--remeasure-time",
        type=float,
        metavar="S",
        help="at the end, measure the flagged results again within S seconds and a quarter of "
        "the sweep's time, keeping a new measurement only where it is clean (default: 60; "
        "with --resume also a finished run's flagged results)",
    )
    p.add_argument(
        "--no-remeasure",
        dest="remeasure_time",
        action="store_const",
        const=0.0,
        help="do not measure flagged results again (--remeasure-time 0)",
    )
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
    p.add_argument(
        "--pack",
        action="store_true",
        help="Ray: several CPU tasks per node, each pinned to its own --cpus-per-task cores "
        "(default: one CPU task per node, nothing beside it)",
    )
    p.set_defaults(func=cmd_run)


def _plan(args: argparse.Namespace) -> RunPlan:
    from convbench.problem.files import load_suite
    from convbench.problem.shard import parse_shard
    from convbench.runner.session import FILTERS, RunPlan

    if not args.suite:
        raise UserError("run: give a suite (name or path), or --resume RUN_ID")
    try:
        options = from_user(vars(args), names="flag")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return RunPlan(
        suite=load_suite(args.suite),
        filters={k: getattr(args, k) for k in FILTERS},
        options=options,
        threads=args.threads,
        timeout_s=args.timeout,
        shard=parse_shard(args.shard) if args.shard else None,
        executor=args.executor,
        cpus_per_task=args.cpus_per_task,
        pack=args.pack,
        **({} if args.remeasure_time is None else {"remeasure_s": args.remeasure_time}),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from convbench.runner.worker import Prelaunched

    console = Console(stderr=True)
    # a new run's worker starts up while this process imports the rest and loads the suite
    # (a resumed run's thread count is in its record: its worker starts in `execute`)
    with contextlib.ExitStack() as stack:
        try:
            workers = None if args.resume else stack.enter_context(Prelaunched(args.threads))
            plan, run_id, store = _open(args)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/] before the run started; nothing was stored")
            return 130
        return _run(args, plan, run_id, store, console, workers)


def _open(args: argparse.Namespace) -> tuple[RunPlan, str, Store]:
    """The run's plan, its id and its store: a new run's (nothing is written before its plan
    holds) or the resumed run's."""
    from convbench.runner.session import RunPlan, new_run_id

    if args.resume:
        store = Store.open_existing(args.db)
        try:
            plan = RunPlan.from_record(store.run(args.resume), args.suite)
        except BaseException:
            store.close()
            raise
        if args.remeasure_time is not None:
            plan = dataclasses.replace(plan, remeasure_s=args.remeasure_time)
        return plan, args.resume, store
    plan = _plan(args)  # a mistake in the flags or the suite: no store is touched
    plan.tasks()
    return plan, args.run_id or new_run_id(), Store(args.db)


def _run(args, plan: RunPlan, run_id: str, store: Store, console: Console, workers) -> int:
    from rich.console import Console
    from rich.markup import escape

    from convbench.runner.session import execute

    out = Console()
    created = store.created
    try:
        n_tasks = len(plan.tasks())
        out.print(f"run {run_id}: suite {plan.suite.name!r}, {n_tasks} tasks → {args.db}")
        result = execute(
            store,
            plan,
            run_id,
            command=args.command_line,
            resume=bool(args.resume),
            console=console,
            progress=not args.quiet,
            address=getattr(args, "address", None),
            workers=workers,
        )
        if result is None or result.interrupted:
            if run_id not in store.run_ids():
                console.print("[yellow]interrupted[/] before the run started; nothing was stored")
                return 130
            kept = sum(result.counts.values()) if result else 0
            console.print(
                f"[yellow]interrupted[/]: {kept} results kept. "
                f"Finish with: convbench run --db {escape(str(args.db))} --resume {run_id}",
                soft_wrap=True,  # a command to copy: never wrapped
            )
            return 130
        _summary(out, store, run_id, result)
    finally:
        unused = created and not store.run_ids()
        store.close()
        if unused:
            store.remove()  # a store this run created and never used: leave nothing behind
    if args.report or args.open:
        from convbench.cli.report import open_in_browser
        from convbench.report import write_report

        path = write_report(args.db, [run_id])
        out.print(f"report: {path}")
        if args.open:
            open_in_browser(path, console)
    return 0


def _summary(out: Console, store: Store, run_id: str, result) -> None:
    from rich.markup import escape

    from convbench.analysis import flags
    from convbench.report.terminal import print_table

    rows = store.result_rows(run_id)
    columns = ["backend", *STATUSES, "flagged", "median [ms] (geomean of ok)"]
    by_backend: dict[str, list[dict]] = {}
    for row in rows:
        by_backend.setdefault(row["backend"], []).append(row)
    table = []
    for backend, group in by_backend.items():
        counts = [sum(r["status"] == s for r in group) for s in STATUSES]
        medians = [r["median_ms"] for r in group if r["status"] == "ok" and r["median_ms"]]
        geo = math.exp(sum(map(math.log, medians)) / len(medians)) if medians else None
        n_flagged = flags.count(group).n_flagged
        table.append([backend, *map(str, counts), str(n_flagged), f"{geo:.4g}" if geo else "—"])
    print_table(out, f"run {run_id}", columns, table, text_columns=1)
    flagged = flags.count(rows).line()
    if flagged:
        out.print(f"[yellow]{escape(flagged)}[/]", soft_wrap=True)
    errors = [r for r in rows if r["status"] in ("error", "timeout")]
    for row in errors[:10]:
        out.print(
            f"[red]{row['status']}[/] {row['case_name']} {row['backend']} "
            f"{row['dtype']} {row['direction']}: {row['reason']}"
        )
    out.print(
        f"results: {store.path} (run {run_id}); "
        f"see them with `convbench export --db {store.path} --run {run_id} --out x.csv`",
        soft_wrap=True,  # a command to copy: never wrapped
        markup=False,
        highlight=False,
    )
