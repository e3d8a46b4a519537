"""`convbench calibrate --gate`: the measurement (`convbench.flows.gate_calibration`) and its
table, beside the figures the field reports for its own gates."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from convbench.errors import UserError

#: What the table's rows are held to besides `gate_calibration.meets` (docs/compare.md).
OTHER_GOALS = "quiet A/A inconclusive ≤ 20%; torch +20%: regression ≥ 99%"


def _goal() -> str:
    """What `GateCalibration.meets` asks of a threshold, from its constants."""
    from convbench.flows.gate_calibration import DETECT, DETECTED, MAX_FALSE_ALARMS

    return (
        f"A/A regression ≤ {MAX_FALSE_ALARMS:.0%} and torch +{DETECT}%: regression "
        f"≥ {DETECTED:.0%} with no pass"
    )


def calibrate_gate_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from convbench.flows.gate_calibration import ANCHOR_FIGURES, calibrate_gate, check_arguments

    try:
        check_arguments(args.pairs, args.conditions)
    except ValueError as exc:  # the flags have the arguments' names
        raise UserError(f"--{exc}") from None
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
    console.print(f"goals: {_goal()}; {OTHER_GOALS}")
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
        f"smallest threshold with {_goal()}, in every condition: {good[0]:.0%}"
        if good
        else f"no threshold up to {max(swept):.0%} gives {_goal()}: more pairs, or a quieter host"
    )
