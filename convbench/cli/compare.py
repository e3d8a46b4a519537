"""`convbench compare`: backends within a run, or two runs against each other.

One run (default: the latest): per-case speedups of the backends over a baseline (default: the
device's vendor backend) and a geometric mean per backend, each marked ``~`` when not
significant. Two runs ``RUN_A RUN_B``: every matched result classified faster / slower / same
/ ambiguous (`convbench.analysis.classify`); with ``--fail-on-regression PCT`` each result and
the comparison get a gate outcome (`convbench.analysis.gate`): pass (exit 0), regression
(exit 1) or inconclusive (exit 3: the evidence could not have shown a regression of PCT).
The statistics live in `convbench.analysis`; this module only selects, formats and prints.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from convbench.cli.common import csv_list, percent
from convbench.errors import UserError
from convbench.store import DEFAULT_DB

if TYPE_CHECKING:
    import pandas as pd


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="backends within a run (--backends), or two runs (RUN_A RUN_B)",
        description="One run (default: latest): per-case speedups of --backends over "
        "--baseline and per-backend geometric means, `~` marking differences not significant. "
        "Two runs: each matched result faster/slower/same/ambiguous; with "
        "--fail-on-regression, a gate: exit 0 pass, 1 regression, 3 inconclusive.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN_ID", help="one run, or RUN_A RUN_B")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--backends", type=csv_list, help="backends to show (default: all measured)")
    p.add_argument(
        "--baseline",
        help="speedups against this backend (default: the device's vendor backend at its "
        "best: onednn_packed, else onednn, on cpu; cudnn on cuda; torch where the vendor has "
        "no result)",
    )
    p.add_argument(
        "--fail-on-regression",
        type=percent,
        metavar="PCT",
        help="two runs: gate at PCT (e.g. 5%%): exit 1 if a result is significantly slower "
        "by more than PCT, 3 if some result's evidence could not have shown that (flagged, or "
        "an interval wider than PCT), else 0; also the band of `same`",
    )
    p.add_argument(
        "--threshold",
        type=percent,
        default=0.05,
        metavar="PCT",
        help="two runs: changes within ±PCT count as the same (default: 5%%)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.set_defaults(func=cmd_compare)


FOOTNOTE = (
    "~ not significant (rank test on raw samples, stratified by round when measured "
    "together; α={alpha}; and beyond the ±{resolution:.0%} one kernel measures from "
    "itself); † outside tolerance; ! measured disturbed (see the result's reason): do not "
    "trust it. Geometric mean: 95% CI over cases = where the "
    "geomean of similar cases would fall (t-interval of the log speedups); range = slowest–"
    "fastest case; noise CI = measurement noise of this geomean over these cases only"
)


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _ci(low, high) -> str:
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "—"
    return f"{low:.3g}–{high:.3g}"


def _load(args) -> tuple[list[str], pd.DataFrame]:
    from convbench.store.frames import load, open_results

    store, owned = open_results(args.db)
    try:
        run_ids = list(args.runs) or [store.latest_run_id()]
        if len(run_ids) > 2:
            raise UserError(f"compare: give one run or two (RUN_A RUN_B), got {len(run_ids)}")
        return run_ids, load(store, list(dict.fromkeys(run_ids)), samples=True)
    finally:
        if owned:
            store.close()


def _check_backends(df: pd.DataFrame, names, what: str) -> None:
    known = sorted(set(df["backend"]))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"{what}: no results for {', '.join(unknown)}; run has {', '.join(known)}")


def cmd_compare(args: argparse.Namespace) -> int:
    run_ids, df = _load(args)
    if args.backends:
        _check_backends(df, args.backends, "--backends")
    if args.baseline:
        _check_backends(df, [args.baseline], "--baseline")
    if len(run_ids) == 2:
        return _two_runs(args, run_ids, df)
    if args.fail_on_regression is not None:
        raise UserError("--fail-on-regression: needs two runs (convbench compare RUN_A RUN_B)")
    return _backends(args, run_ids[0], df)


# -- one run: backends against a baseline ------------------------------------------------
def _model_tables(df: pd.DataFrame, backends) -> tuple[pd.DataFrame | None, list]:
    """Whole-model convolution time per backend (Σ count × median) and the best per-layer
    mix, when the suite records layer counts; as a frame and as printable tables."""
    import pandas as pd

    from convbench.analysis import compare as analysis
    from convbench.analysis import modeltime
    from convbench.report.format import format_time

    if not modeltime.has_layer_counts(df):
        return None, []
    if backends:
        keep = set(backends).union(*analysis.VENDOR_BACKENDS.values())
        df = df[df["backend"].isin(keep)]
    totals = modeltime.model_totals(df)
    rows = [
        [
            r.backend,
            r.device,
            r.dtype,
            r.direction,
            r.batch or r.batch_sizes,
            str(r.n_layers),
            format_time(r.total_ms)
            if not pd.isna(r.total_ms)
            else f"incomplete: {r.n_missing} of {r.n_cases} cases not ok",
            format_time(r.mix_ms),
            _fmt(r.mix_speedup) + "×" if not pd.isna(r.mix_speedup) else "—",
        ]
        for r in totals.itertuples()
    ]
    columns = [
        "backend",
        "device",
        "dtype",
        "direction",
        "batch",
        "layers",
        "model conv time",
        "best mix",
        "mix speedup",
    ]
    title = "whole model: Σ count × median per backend, and the best per-layer mix"
    return totals, [(title, columns, rows)]


def _backends(args, run_id: str, df: pd.DataFrame) -> int:
    import pandas as pd
    from rich.console import Console

    from convbench.analysis import compare as analysis
    from convbench.analysis import flags
    from convbench.report.format import format_ratio, format_time
    from convbench.report.terminal import move_constant_columns, print_table, print_tables, records

    sp = analysis.speedups(df, args.baseline, args.backends, alpha=args.alpha)
    geo = analysis.geomean_speedups(sp)
    totals, model_tables = _model_tables(df, args.backends)
    if args.format == "json":
        payload = {
            "run_id": run_id,
            "baseline": args.baseline or "vendor (torch where the vendor has no result)",
            "alpha": args.alpha,
            "speedups": records(sp),
            "geomeans": records(geo),
            "model_totals": records(totals) if totals is not None else None,
        }
        print(json.dumps(payload, indent=2))
        return 0
    if args.format == "csv":
        long = pd.concat(
            [sp.assign(row_type="case"), geo.assign(row_type="geomean", case="GEOMEAN")],
            ignore_index=True,
        )
        print(long.to_csv(index=False), end="")
        return 0
    measured = list(dict.fromkeys(sp["backend"]))
    # in the order asked for (--backends), else as measured
    backends = [b for b in args.backends if b in measured] if args.backends else measured
    geo = geo.sort_values("backend", key=lambda c: c.map(backends.index), kind="stable")
    shown = {*backends, *sp["baseline"]}
    case_rows = []
    for key, group in sp.groupby(list(analysis.KEYS), sort=False):
        by = {r.backend: r for r in group.itertuples()}
        first = group.iloc[0]
        row = [*key, f"{first['baseline']} {format_time(first['baseline_ms'])}"]
        for name in backends:
            r = by.get(name)
            if r is None:
                row.append("—")
                continue
            text = format_ratio(r.speedup, r.significant)
            row.append(text + ("" if r.within_tol else " †") + (" !" if r.flagged else ""))
        case_rows.append(row)
    case_columns = [*analysis.KEYS, "baseline", *backends]
    geo_rows = [
        [
            r.backend,
            r.device,
            r.dtype,
            r.baseline,
            str(r.n_cases),
            format_ratio(r.geomean_speedup, r.significant),
            _ci(r.cases_ci_low, r.cases_ci_high),
            _ci(r.min_speedup, r.max_speedup),
            _ci(r.ci_low, r.ci_high),
            f"{r.n_significant}/{r.n_cases}",
        ]
        for r in geo.itertuples()
    ]
    geo_columns = ["backend", "device", "dtype", "baseline", "cases", "geomean"]
    geo_columns += ["CI over cases", "range", "noise CI", "signif."]
    # Key columns with one value throughout (often dtype, device, direction) go to the title,
    # so the table fits a terminal.
    title, case_columns, case_rows = move_constant_columns(
        f"run {run_id}: speedup over the baseline (> 1: faster)",
        case_columns,
        case_rows,
        range(1, len(analysis.KEYS)),
    )
    geo_title, geo_columns, geo_rows = move_constant_columns(
        "geometric mean speedup per backend", geo_columns, geo_rows, (1, 2, 3)
    )
    note = FOOTNOTE.format(alpha=args.alpha, resolution=analysis.RESOLUTION)
    if args.format == "markdown":
        print_tables([(title, case_columns, case_rows), (geo_title, geo_columns, geo_rows),
                      *model_tables], "markdown", note)  # fmt: skip
        return 0
    console = Console()
    # the key columns (kept whole, repeated when a table is dealt into parts) end at baseline
    print_table(console, title, case_columns, case_rows, case_columns.index("baseline") + 1)
    geo_keys = sum(c in ("backend", "device", "dtype", "baseline") for c in geo_columns)
    print_table(console, geo_title, geo_columns, geo_rows, geo_keys)
    for table in model_tables:
        print_table(console, *table)
    flagged = flags.count(df[df["backend"].isin(shown)].to_dict("records")).line()
    console.print(note, style="dim", markup=False, highlight=False)
    if flagged:
        console.print(f"convbench: {flagged}", markup=False, highlight=False, soft_wrap=True)
    return 0


# -- two runs ----------------------------------------------------------------------------
#: How many results of each gate outcome other than pass are named, with their reasons.
GATE_LINES = 10


def _gate(cmp: pd.DataFrame, threshold: float) -> int:
    """The gate's outcome per result and overall, on stderr; its exit code
    (`convbench.analysis.gate.EXIT_CODES`)."""
    from convbench.analysis import gate

    gated = gate.gate(cmp, threshold)
    outcome = gate.overall(gated)
    counts = ", ".join(f"{int((gated['gate'] == o).sum())} {o}" for o in gate.OUTCOMES)
    for name in ("regression", "inconclusive"):
        shown = gated[gated["gate"] == name]
        for r in shown.head(GATE_LINES).itertuples():
            where = f"{r.case} {r.backend} {r.dtype} {r.device} {r.direction} {r.layout}"
            print(f"convbench: gate: {name}: {where}: {r.gate_reason}", file=sys.stderr)
        if len(shown) > GATE_LINES:
            print(f"convbench: gate: … and {len(shown) - GATE_LINES} more {name}", file=sys.stderr)
    code = gate.EXIT_CODES[outcome]
    advice = {
        "pass": "every result rules out a regression beyond the threshold",
        "regression": "a result is significantly slower beyond the threshold",
        "inconclusive": "no regression shown, but some results could not have shown one: "
        "measure them again on a quieter host, or with more samples (--max-time)",
    }[outcome]
    print(
        f"convbench: gate {outcome} at {threshold:.0%} ({counts}): {advice}; exit {code}",
        file=sys.stderr,
    )
    return code


def _host_pace_us(frame: pd.DataFrame) -> float | None:
    """The run's median reference-kernel reading (`convbench.measure.pace`), if it has any."""
    if "pace_us" not in frame:
        return None
    values = frame["pace_us"].dropna()
    return float(values.median()) if len(values) else None


def _two_runs(args, run_ids: list[str], df: pd.DataFrame) -> int:

    from convbench.analysis import compare as analysis
    from convbench.analysis import flags
    from convbench.report.format import format_ratio
    from convbench.report.tables import comparison_table
    from convbench.report.terminal import clean, move_constant_columns, print_tables, records, texts

    old_id, new_id = run_ids
    whole = df[df["run_id"] == old_id], df[df["run_id"] == new_id]
    old, new = whole
    if args.backends:
        old, new = (f[f["backend"].isin(args.backends)] for f in (old, new))
    gate = args.fail_on_regression
    threshold = gate if gate is not None else args.threshold
    cmp = analysis.compare_runs(old, new, threshold=threshold, alpha=args.alpha)
    if gate is not None:  # the anchors come from the whole runs, whatever --backends shows
        from convbench.analysis.gate import anchor

        cmp = anchor(cmp, *whole)
    summary = analysis.comparison_summary(cmp, threshold)
    pace = {run: _host_pace_us(f) for run, f in (("old", old), ("new", new))}
    if args.format == "json":
        payload = {"old": old_id, "new": new_id, "alpha": args.alpha, **summary}
        payload["host_pace_us"] = pace
        payload["results"] = records(cmp)
        if gate is not None:
            from convbench.analysis.gate import gate as judge
            from convbench.analysis.gate import overall

            gated = judge(cmp, gate)
            payload.update(gate=overall(gated), results=records(gated))
        print(json.dumps(clean(payload), indent=2))
    elif args.format == "csv":
        print(cmp.to_csv(index=False), end="")
    else:
        # results no run has (a backend unsupported on the device in both) are counted, not listed
        absent = cmp["status_old"].isin(["unsupported"]) & cmp["status_new"].isin(["unsupported"])
        columns, rows = comparison_table(cmp[~absent], "A", "B")
        rows = texts(rows)
        counts = ", ".join(f"{n} {v}" for v, n in summary["counts"].items() if n)
        geo = format_ratio(summary["geomean_ratio"], summary["significant"])
        title = f"A = {old_id}, B = {new_id}: {counts}; geomean B/A time {geo}"
        if absent.any():
            title += f"; {int(absent.sum())} unsupported in both not shown"
        title, columns, rows = move_constant_columns(title, columns, rows, (2, 3, 4))
        note = (
            f"slower/faster: significant (α={args.alpha}) and beyond ±{threshold:.0%}; same: "
            f"95% CI within ±{threshold:.0%}; ambiguous: too noisy to tell; disturbed: a run "
            "flagged it (other processes, or an unsteady machine), not judged"
        )
        keys = ("case", "backend", "dtype", "device", "direction")
        text_columns = sum(c in keys for c in columns)
        print_tables([(title, columns, rows)], args.format, note, text_columns)
        if pace["old"] and pace["new"]:
            shift = pace["new"] / pace["old"] - 1
            print(
                f"host pace: the reference kernel read {pace['old']:.1f} µs in A, "
                f"{pace['new']:.1f} µs in B (median over the results): B's host ran it "
                f"{abs(shift):.0%} {'slower' if shift > 0 else 'faster'}"
                + (
                    " — part of any difference may be the machine, not the code"
                    if abs(shift) > 0.05
                    else ""
                )
            )
    counted = flags.count([*old.to_dict("records"), *new.to_dict("records")])
    if gate is None:
        if counted.line() and args.format == "table":
            print(f"convbench: {counted.line()}", file=sys.stderr)
        return 0
    return _gate(cmp, gate)
