"""How well two measurements of the same tasks agree: the figures `convbench calibrate
--interference` prints (a quiet run as the truth, a second quiet run or a disturbed one
against it)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Agreement:
    n: int  # tasks measured in both
    within_pct: float  # % of medians within ±tolerance of the truth
    median_abs_diff: float  # median |other/truth - 1|
    worst_diff: float  # the largest |other/truth - 1|
    flagged: int  # tasks the measurement itself flagged as disturbed
    unflagged_over: int  # tasks off by more than `gross` and not flagged
    tolerance: float = 0.05
    gross: float = 0.10


def relative(medians: Mapping[str, float], groups: Mapping[str, object]) -> dict[str, float]:
    """Each median over the geometric mean of its group's (the backends of one case): the
    ratios a comparison of algorithms rests on, free of whatever slowed the whole machine."""
    members: dict[object, list[str]] = {}
    for key, median in medians.items():
        if key in groups and median > 0:
            members.setdefault(groups[key], []).append(key)
    out = {}
    for keys in members.values():
        if len(keys) < 2:
            continue
        geo = math.exp(sum(math.log(medians[k]) for k in keys) / len(keys))
        out.update({k: medians[k] / geo for k in keys})
    return out


def at_equal_pace(
    medians: Mapping[str, float],
    pace_us: Mapping[str, float],
    truth_pace_us: Mapping[str, float],
) -> dict[str, float]:
    """Each median as it would have been at the truth's pace: scaled by the ratio of the
    reference kernel's readings (`convbench.measure.pace`) during the truth's measurement and
    during this one. Tasks without both readings are left out. A diagnostic of how much of a
    disagreement the host's pace explains, not a replacement for the measured medians."""
    return {
        k: m * truth_pace_us[k] / pace_us[k]
        for k, m in medians.items()
        if pace_us.get(k) and truth_pace_us.get(k)
    }


def agreement(
    truth: Mapping[str, float],
    other: Mapping[str, float],
    flagged: Collection[str] = (),
    tolerance: float = 0.05,
    gross: float = 0.10,
) -> Agreement:
    """Compare ``other``'s medians with ``truth``'s, task by task (keys in both, both > 0)."""
    keys = [k for k in truth if k in other and truth[k] > 0 and other[k] > 0]
    diffs = {k: other[k] / truth[k] - 1.0 for k in keys}
    if not keys:
        return Agreement(0, math.nan, math.nan, math.nan, 0, 0, tolerance, gross)
    absolute = sorted(abs(d) for d in diffs.values())
    mid = len(absolute) // 2
    median = absolute[mid] if len(absolute) % 2 else (absolute[mid - 1] + absolute[mid]) / 2
    flagged = set(flagged)
    return Agreement(
        n=len(keys),
        within_pct=100.0 * sum(a <= tolerance for a in absolute) / len(keys),
        median_abs_diff=median,
        worst_diff=max(absolute),
        flagged=sum(k in flagged for k in keys),
        unflagged_over=sum(abs(diffs[k]) > gross and k not in flagged for k in keys),
        tolerance=tolerance,
        gross=gross,
    )
