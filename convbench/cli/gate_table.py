"""`convbench calibrate --gate`: the measurement (`convbench.flows.gate_calibration`) and its
table, beside the figures the field reports for its own gates."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from convbench.errors import UserError

#: What the table's rows are held to (docs/compare.md), printed under it.
GOALS = (
    "goals: A/A regression ≤ 1%, and quiet inconclusive ≤ 20%; torch +10%: regression "
    "≥ 90%, pass 0; torch +20%: regression ≥ 99%"
)


def calibrate_gate_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from convbench.flows.gate_calibration import ANCHOR_FIGURES, CONDITIONS, calibrate_gate

    if args.pairs < 1:
        raise UserError(f"--pairs: expected at least 1, got {args.pairs}")
    unknown = [c for c in args.conditions if c not in CONDITIONS]
    if unknown:
        raise UserError(f"--conditions: unknown {unknown[0]!r}; known: {', '.join(CONDITIONS)}")
    console = Console()

    def on_run(condition: str, i: int) -> None:
        console.print(f"  {condition}: run {i + 1} of {args.pairs + 1}", style="dim")

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "gate.sqlite")
        console.print(
            f"gate calibration: suite {args.suite!r}, forward, {args.pairs} pairs per "
            f"condition, threshold {args.threshold:.0%}; store {args.db or '(temporary)'}"
        )
        cal = calibrate_gate(
            db,
            args.suite,
            args.pairs,
            args.threshold,
            args.threads,
            args.conditions,
            on_run=on_run,
        )
    table = Table(title=f"gate outcomes per case comparison, threshold {cal.threshold:.0%}")
    for column in ("condition", "pair", "n", "regression", "inconclusive", "pass"):
        table.add_column(column, justify="left" if column in ("condition", "pair") else "right")
    for t in cal.tallies:
        table.add_row(
            t.condition,
            "A/A" if not t.injected else f"torch +{t.injected}%",
            str(t.n),
            *(
                f"{t.share(o):.1%} ({t.outcomes[o]})"
                for o in ("regression", "inconclusive", "pass")
            ),
        )
    console.print(table)
    console.print(GOALS)
    console.print(
        "A/A: each backend of a run against itself in the next run (same code), so a "
        "regression there is a false alarm; torch +p%: torch against torch slowed by p% of "
        "its own time in the next run, so regression is a detection and pass a miss."
    )
    _thresholds(cal, console)
    console.print("the field, for comparison (false alarms · misses):")
    for name, false_alarms, misses in ANCHOR_FIGURES:
        console.print(f"  {name}: {false_alarms} · {misses}")
    if args.db:
        console.print(
            f"runs: {args.db} ({', '.join(f'{c} {len(r)}' for c, r in cal.runs.items())})"
        )
    return 0


def _thresholds(cal, console) -> None:
    """The same pairs judged at other thresholds, and the smallest that meets the goals."""
    from rich.table import Table

    from convbench.flows.gate_calibration import DETECT

    swept = cal.sweep()
    table = Table(title="the same pairs at other thresholds")
    table.add_column("threshold", justify="right")
    for condition in cal.compared:
        table.add_column(f"{condition}: A/A regression", justify="right")
        table.add_column(f"+{DETECT}%: regression / pass", justify="right")
    for threshold, tallies in swept.items():
        cells = [f"{threshold:.0%}"]
        for condition in cal.compared:
            aa = next(t for t in tallies if (t.condition, t.injected) == (condition, 0))
            hit = next(t for t in tallies if (t.condition, t.injected) == (condition, DETECT))
            cells += [f"{aa.share('regression'):.1%}", f"{hit.share('regression'):.0%} / "
                      f"{hit.outcomes['pass']}"]  # fmt: skip
        table.add_row(*cells)
    console.print(table)
    good = [t for t, tallies in swept.items() if cal.meets(tallies)]
    console.print(
        f"smallest threshold with A/A regression ≤ 1% and +{DETECT}% caught ≥ 90% with no "
        f"pass, in every condition: {good[0]:.0%}"
        if good
        else f"no threshold up to {max(swept):.0%} gives A/A regression ≤ 1% and catches "
        f"+{DETECT}%: more pairs, or a quieter host"
    )
