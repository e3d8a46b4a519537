"""`convbench run`: expand a suite, sweep it in a worker process, store every result."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from convbench.errors import UserError
from convbench.measure import MeasureOptions
from convbench.runner import STATUSES, Worker, new_run_id, sweep
from convbench.shard import parse_shard, shard_tasks
from convbench.store import Store
from convbench.suite import load_suite
from convbench.timing import TimingConfig

FILTERS = ("backends", "dtypes", "devices", "directions", "batch_sizes")


def _options(args: argparse.Namespace) -> MeasureOptions:
    try:
        timing = TimingConfig(
            warmup_s=args.warmup,
            min_samples=args.min_samples,
            max_time_s=args.max_time,
            rel_ci=args.rel_ci,
            mode=args.mode,
            max_samples=max(1000, args.min_samples),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return MeasureOptions(timing=timing)


def cmd_run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    out = Console()
    store = Store(args.db)
    if args.resume:
        record = store.run(args.resume)
        config = record["config"]
        suite = load_suite(args.suite or config["suite_path"])
        filters = config["filters"]
        options = MeasureOptions.from_dict(config["options"])
        threads = config.get("threads")
        run_id = args.resume
        timeout_s = config.get("timeout_s")
        shard = config.get("shard")
        executor = config.get("executor", "local")
        cpus_per_task = config.get("cpus_per_task")
    else:
        if not args.suite:
            raise UserError("run: give a suite (name or path), or --resume RUN_ID")
        suite = load_suite(args.suite)
        filters = {k: getattr(args, k) for k in FILTERS}
        options = _options(args)
        threads = args.threads
        run_id = args.run_id or new_run_id()
        timeout_s = args.timeout
        shard = parse_shard(args.shard) if args.shard else None
        executor = args.executor
        cpus_per_task = args.cpus_per_task
    if threads is not None and threads < 1:
        raise UserError(f"--threads: expected a positive int, got {threads}")
    tasks = suite.tasks(**filters)
    if not tasks:
        raise UserError(f"{suite.path}: the filters leave no task to run")
    if shard:
        tasks = shard_tasks(tasks, *shard)

    if not args.resume and run_id in store.run_ids():
        raise UserError(
            f"{args.db}: run {run_id!r} already exists; finish it with --resume {run_id}"
        )
    worker = Worker(threads)
    result = None
    try:
        if not args.resume:
            env = worker.call(("env",), 120)
            store.create_run(
                run_id,
                suite=suite.name,
                suite_path=str(suite.path) if suite.path else None,
                command=args.command_line,
                env=env,
                config={
                    "suite_path": str(suite.path) if suite.path else None,
                    "filters": filters,
                    "options": options.to_dict(),
                    "threads": threads,
                    "timeout_s": timeout_s,
                    "n_tasks": len(tasks),
                    "shard": list(shard) if shard else None,
                    "executor": executor,
                    "cpus_per_task": cpus_per_task,
                },
            )
        out.print(f"run {run_id}: suite {suite.name!r}, {len(tasks)} tasks → {args.db}")
        if executor == "local" and not store.run(run_id)["peaks"]:
            store.set_run_peaks(run_id, _measure_peaks(worker, tasks, console))
        result = _sweep_with_progress(
            tasks,
            store,
            run_id,
            options,
            suite.name,
            worker,
            timeout_s,
            quiet=args.quiet,
            console=console,
            threads=threads,
            executor=executor,
            address=getattr(args, "address", None),
            cpus_per_task=cpus_per_task,
        )
    except KeyboardInterrupt:
        result = None  # Ctrl-C before the sweep began (start-up, environment, GEMM peak)
    finally:
        worker.stop()

    if result is None or result.interrupted:
        if run_id not in store.run_ids():
            console.print("[yellow]interrupted[/] before the run started; nothing was stored")
            store.close()
            return 130
        store.set_run_status(run_id, "interrupted")
        kept = sum(result.counts.values()) if result else 0
        console.print(
            f"[yellow]interrupted[/]: {kept} results kept. "
            f"Finish with: convbench run --db {args.db} --resume {run_id}"
        )
        store.close()
        return 130
    store.set_run_status(run_id, "finished")
    _summary(out, store, run_id, result)
    store.close()
    if getattr(args, "report", False) or getattr(args, "open", False):
        from convbench.commands.report import open_in_browser
        from convbench.report import write_report

        path = write_report(args.db, [run_id])
        out.print(f"report: {path}")
        if args.open:
            open_in_browser(path, console)
    return 0


def _measure_peaks(worker: Worker, tasks, console: Console) -> dict[str, float | None]:
    """The roofline's ceiling: a GEMM's GFLOP/s once per (device, dtype) of the run, measured
    by the worker with the run's thread settings (see `convbench.peak`)."""
    peaks: dict[str, float | None] = {}
    for device, dtype in sorted({(t.device, t.dtype) for t in tasks}):
        gflops, why_not = worker.call(("peak", device, dtype), 300)
        peaks[f"{device}/{dtype}"] = gflops
        if why_not:
            console.print(f"[yellow]no peak GFLOP/s for {device}/{dtype}[/]: {why_not}")
    return peaks


def _sweep_with_progress(
    tasks, store, run_id, options, suite_name, worker, timeout_s, *, quiet, console, **sweep_kw
):
    if quiet:
        return sweep(
            tasks,
            store,
            run_id,
            options,
            suite_name=suite_name,
            worker=worker,
            timeout_s=timeout_s,
            **sweep_kw,
        )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        bar = progress.add_task("starting", total=len(tasks))

        def on_start(index, task):
            progress.update(
                bar,
                description=f"{task.case.name} · {task.backend} · {task.dtype} · "
                f"{task.device} · {task.direction}",
            )

        def on_result(index, task, row):
            progress.advance(bar)

        already = len(store.finished_keys(run_id) & {t.key for t in tasks})
        progress.advance(bar, already)
        result = sweep(
            tasks,
            store,
            run_id,
            options,
            suite_name=suite_name,
            worker=worker,
            timeout_s=timeout_s,
            on_start=on_start,
            on_result=on_result,
            **sweep_kw,
        )
        progress.update(bar, description="done" if not result.interrupted else "interrupted")
    return result


def _summary(out: Console, store: Store, run_id: str, result) -> None:
    rows = store.result_rows(run_id)
    table = Table(title=f"run {run_id}", show_lines=False)
    table.add_column("backend")
    for status in STATUSES:
        table.add_column(status, justify="right")
    table.add_column("median ms (geomean of ok)", justify="right")
    import math

    by_backend: dict[str, list[dict]] = {}
    for row in rows:
        by_backend.setdefault(row["backend"], []).append(row)
    for backend, group in by_backend.items():
        counts = [sum(r["status"] == s for r in group) for s in STATUSES]
        medians = [r["median_ms"] for r in group if r["status"] == "ok" and r["median_ms"]]
        geo = math.exp(sum(map(math.log, medians)) / len(medians)) if medians else None
        table.add_row(backend, *map(str, counts), f"{geo:.4g}" if geo else "—")
    out.print(table)
    errors = [r for r in rows if r["status"] in ("error", "timeout")]
    for row in errors[:10]:
        out.print(
            f"[red]{row['status']}[/] {row['case_name']} {row['backend']} "
            f"{row['dtype']} {row['direction']}: {row['reason']}"
        )
    out.print(
        f"results: {store.path} (run {run_id}); "
        f"see them with `convbench export --db {store.path} --run {run_id} --out x.csv`"
    )
