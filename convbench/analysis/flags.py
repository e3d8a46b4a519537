"""Flagged results, counted and named: how many of a run's measured results convbench would not
trust, for which reasons, and what the user can do about it.

A result is flagged when its ``disturbed`` column is set (`convbench.measure.task`): too few
undisturbed samples, a median that moved between stretches of the measurement (``unsteady``),
or a host that ran the reference kernel off its usual pace (``off pace``). Its ``reason``
lists every flag that applies, each part starting with the flag's name; `kinds` reads them
back. Pure: rows in, counts and text out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: The flags a result's reason can carry, as each part of the reason starts.
KINDS = ("disturbed", "too few samples", "unsteady", "off pace")

#: What to do about flagged results: the commands that exist for it.
ADVICE = (
    "their times may be the host's, not the backend's: measure again on a quieter host "
    "(`convbench calibrate --interference` shows how far this one can be trusted)"
)


def is_flagged(row: Mapping) -> bool:
    """Was this result flagged when it was measured?"""
    return _truthy(row.get("disturbed"))


def _truthy(value) -> bool:
    """A stored flag: 1/0, True/False, or missing (None, NaN: not flagged)."""
    if value is None:
        return False
    try:
        return not math.isnan(float(value)) and bool(value)
    except (TypeError, ValueError):
        return bool(value)


def kinds(reason: str | None) -> list[str]:
    """The flags named in a result's reason, in `KINDS` order."""
    parts = [p.strip() for p in (reason or "").split(";")]
    return [k for k in KINDS if any(p.startswith(k) for p in parts)]


@dataclass(frozen=True)
class FlagCount:
    """How many of ``n_measured`` results (those with a median) were flagged, and why."""

    n_flagged: int
    n_measured: int
    by_kind: tuple[tuple[str, int], ...] = ()

    def line(self, what: str = "results") -> str | None:
        """One line for the end of a table, or None when nothing was flagged."""
        if not self.n_flagged:
            return None
        why = ", ".join(f"{kind} {n}" for kind, n in self.by_kind)
        return (
            f"{self.n_flagged} of {self.n_measured} {what} flagged"
            + (f" ({why})" if why else "")
            + f": {ADVICE}"
        )


def count(rows: Iterable[Mapping]) -> FlagCount:
    """Count the flagged results among ``rows`` (result rows or records of a results frame);
    rows without a median (unsupported, failed) are not measured and not counted."""
    measured = flagged = 0
    by_kind: Counter[str] = Counter()
    for row in rows:
        median = row.get("median_ms")
        if median is None or math.isnan(float(median)):
            continue
        measured += 1
        if is_flagged(row):
            flagged += 1
            by_kind.update(kinds(row.get("reason")))
    ordered = tuple((k, by_kind[k]) for k in KINDS if by_kind[k])
    return FlagCount(flagged, measured, ordered)
