"""The regression gate of `convbench compare --fail-on-regression`: three outcomes per result and
for the whole comparison, each with its exit code (pure).

A result is judged against an **anchor** where it has one: the case's baseline backend (the
vendor's), timed in the same interleaved rounds in both runs (`anchor`). Its time relative
to the anchor, round by round, does not move with the host's pace, which changes by 20–40%
between minutes on a shared VM and which the guest cannot see; so a flagged run still gives
evidence. The anchor itself, and a case without one, is judged on its own time.

* ``regression`` — anchored: slower than the anchor by more than the threshold, the
  interval above 1. Alone: significantly slower (Mann–Whitney at ``alpha``) by more than
  the threshold, on evidence neither run flagged, or, flagged, by more than any disturbance
  has been seen to move a median (`BEYOND_DISTURBANCE`).
* ``pass`` — the 95% interval of the ratio (anchored, or alone and unflagged) ends at or
  below ``1 + threshold``: the data rule out a regression as large as the threshold.
* ``inconclusive`` — the evidence could not have caught the threshold: an interval wider
  than it, a result alone that a run flagged (disturbed, unsteady, off pace), or a result
  not measured ``ok`` in both runs.

The gate never says ``pass`` on evidence that could not have shown the regression: a change
that slows a backend and its anchor alike is not in the anchored ratio, and it shows in the
anchor's own row, which the whole comparison includes. The whole comparison is
``regression`` if any result is, else ``inconclusive`` if any result is, else ``pass``.
`convbench calibrate --gate` measures its false-alarm and detection rates on this machine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import pandas as pd

from convbench.analysis import stats
from convbench.analysis.compare import (
    BEYOND_DISTURBANCE,
    KEYS,
    _paired_rounds,
    _samples,
    baseline_backend,
    keyed,
)

OUTCOMES = ("pass", "regression", "inconclusive")
#: The exit code of `convbench compare --fail-on-regression` for each outcome (2 is a usage
#: error, as for every convbench command).
EXIT_CODES: Mapping[str, int] = {"pass": 0, "regression": 1, "inconclusive": 3}


#: The columns `anchor` adds to a comparison.
ANCHORED = ("anchor", "anchored_ratio", "anchored_low", "anchored_high")


def round_ratio(x: Mapping, anchor: Mapping, confidence: float = 0.95) -> tuple[float, ...]:
    """``x / anchor`` for two results timed in the same interleaved rounds: each sample of
    ``x`` over the anchor's median in the sample's round, then the median of these ratios
    with its order-statistic interval (`convbench.analysis.stats.median_ci`). A pace the
    host keeps for a round moves a sample and its round's anchor alike, so it cancels.
    NaNs without shared rounds."""
    rounds = _paired_rounds(x, anchor)
    if rounds is None:
        return math.nan, math.nan, math.nan
    by_round: dict[int, list[float]] = defaultdict(list)
    for value, mark in zip(_samples(anchor), rounds[1], strict=True):
        by_round[mark].append(value)
    pace = {mark: float(np.median(values)) for mark, values in by_round.items()}
    logs = [
        math.log(value / pace[mark])
        for value, mark in zip(_samples(x), rounds[0], strict=True)
        if mark in pace
    ]
    low, high = stats.median_ci(logs, confidence) if logs else (math.nan, math.nan)
    if math.isnan(low):
        return math.nan, math.nan, math.nan
    return math.exp(float(np.median(logs))), math.exp(low), math.exp(high)


def _anchored(old: tuple[Mapping, Mapping], new: tuple[Mapping, Mapping]) -> tuple[float, ...]:
    """(result, anchor) in the old run and in the new → the new `round_ratio` over the old,
    with an interval that adds the two intervals' log half-widths in quadrature."""
    (r0, lo0, hi0), (r1, lo1, hi1) = round_ratio(*old), round_ratio(*new)
    if any(math.isnan(v) for v in (r0, lo0, hi0, r1, lo1, hi1)):
        return math.nan, math.nan, math.nan
    ratio = r1 / r0
    half = math.hypot(math.log(hi0 / lo0), math.log(hi1 / lo1)) / 2
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def anchor(cmp: pd.DataFrame, old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``cmp`` (`compare_runs` of ``old`` and ``new``, with raw samples) with each result's
    time relative to an anchor timed beside it, new run over old (`_anchored`): the case's
    baseline backend (`baseline_backend` among those ``ok`` in both runs), whose own rows
    get none. A host that changed pace between the runs moves a raw ratio, not an anchored
    one; a change in the anchor itself shows in its own row."""
    sides = [
        {(tuple(r[k] for k in KEYS), r["backend"]): r for r in keyed(f).to_dict("records")
         if r["status"] == "ok"}
        for f in (old, new)
    ]  # fmt: skip
    in_both: dict[tuple, set] = defaultdict(set)
    for key, backend in sides[0].keys() & sides[1].keys():
        in_both[key].add(backend)
    columns: dict[str, list] = {name: [] for name in ANCHORED}
    for row in cmp.to_dict("records"):
        key = tuple(row[k] for k in KEYS)
        name = baseline_backend(in_both[key], row["device"]) if in_both[key] else None
        figures = (math.nan,) * 3
        if name not in (None, row["backend"]) and row["backend"] in in_both[key]:
            pairs = [(side[(key, row["backend"])], side[(key, name)]) for side in sides]
            figures = _anchored(*pairs)
        columns["anchor"].append(None if math.isnan(figures[0]) else name)
        for column, value in zip(ANCHORED[1:], figures, strict=True):
            columns[column].append(value)
    return _widened(cmp.assign(**columns))


#: The fewest anchored results from which `_widened` estimates the spread between runs.
MIN_SPREAD_RESULTS = 5


def _widened(cmp: pd.DataFrame) -> pd.DataFrame:
    """Anchored intervals widened by the spread between runs. Each run places its tensors
    anew, and a result's ratio to its anchor moves by about 2% from run to run on the
    development VM although nothing changed (`convbench calibrate --gate`), which no sample
    of one run shows. Its size here: the robust spread (1.4826 × the median absolute
    deviation) of the comparison's anchored log ratios, added in quadrature to each
    interval's half-width at 95%. Needs `MIN_SPREAD_RESULTS` anchored results;
    ``anchored_spread`` says what was added (0 with fewer)."""
    logs = np.log(cmp["anchored_ratio"].dropna().to_numpy(dtype=float))
    spread = 0.0
    if len(logs) >= MIN_SPREAD_RESULTS:
        spread = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
    if spread == 0.0:
        return cmp.assign(anchored_spread=spread)
    ratio = cmp["anchored_ratio"]
    half = np.log(cmp["anchored_high"] / cmp["anchored_low"]) / 2
    half = np.sqrt(half**2 + (1.96 * spread) ** 2)
    return cmp.assign(
        anchored_low=ratio * np.exp(-half),
        anchored_high=ratio * np.exp(half),
        anchored_spread=spread,
    )


def gate_result(row: Mapping, threshold: float) -> tuple[str, str]:
    """One compared result (a row of `compare_runs`, with `anchor`'s columns where it was
    anchored) judged against ``threshold`` (0.05 = 5%): its outcome and why, in words."""
    if row["verdict"] == "missing":
        return "inconclusive", (
            f"not measured ok in both runs ({row['status_old']} → {row['status_new']})"
        )
    if not pd.isna(row.get("anchored_ratio", math.nan)):
        return _anchored_result(row, threshold)
    return _alone_result(row, threshold)


def _figure(ratio: float, low: float, high: float) -> str:
    return f"{ratio:.3f}× [{low:.3f}–{high:.3f}]"


def _anchored_result(row: Mapping, threshold: float) -> tuple[str, str]:
    """Judged on the ratio to the anchor timed in the same rounds (`anchor`): the host's
    pace cancels in it, so a flagged run still counts; a change the anchor shares shows in
    the anchor's own row."""
    limit = 1.0 + threshold
    ratio, low, high = (float(row[c]) for c in ANCHORED[1:])
    against = f"{_figure(ratio, low, high)} against {row['anchor']} timed beside it"
    alone = f"alone {_figure(row['ratio'], row['ci_low'], row['ci_high'])}"
    if ratio > limit and low > 1.0:
        return "regression", f"slower beyond {threshold:.0%}: {against} ({alone})"
    if high <= limit:
        return "pass", f"within {threshold:.0%}: {against} ({alone})"
    return "inconclusive", (
        f"{against}: too noisy to rule out a {threshold:.0%} regression ({alone})"
    )


def _alone_result(row: Mapping, threshold: float) -> tuple[str, str]:
    """Judged on the result's own time in the two runs (no anchor: the anchor itself, or a
    case whose anchor was not measured in both)."""
    ratio, high = float(row["ratio"]), float(row["ci_high"])
    limit = 1.0 + threshold
    flagged = bool(row.get("flagged"))
    figure = f"{_figure(ratio, row['ci_low'], high)}, p={row['p_value']:.2g}"
    if row["significant"] and ratio > limit:
        if not flagged or ratio > BEYOND_DISTURBANCE:
            return "regression", f"significantly slower beyond {threshold:.0%}: {figure}"
        return "inconclusive", (
            f"slower ({figure}) but flagged ({row.get('flag') or 'disturbed'}): the host may "
            "have caused it; measure again"
        )
    if flagged:
        return "inconclusive", (
            f"flagged ({row.get('flag') or 'disturbed'}): its evidence cannot rule out a "
            f"{threshold:.0%} regression ({figure})"
        )
    if not math.isnan(high) and high <= limit:
        return "pass", f"95% CI ends at {high:.3f}× ≤ {limit:.3f}×"
    return "inconclusive", (
        f"95% CI reaches {high:.3f}×, past {limit:.3f}×: too noisy to rule out a "
        f"{threshold:.0%} regression"
    )


def _case_moved_along(row: Mapping, rows: list[Mapping]) -> str | None:
    """For an anchor judged slower alone: did the backends anchored to it in its case move
    with it? Their anchored ratios stay near 1 when the whole case moved (the host's pace,
    or a change they all share), and fall to 1 / its ratio when the anchor alone did. Says
    so in words when the first is nearer, else None."""
    key = tuple(row[k] for k in KEYS)
    anchored = [
        float(r["anchored_ratio"])
        for r in rows
        if r.get("anchor") == row["backend"] and tuple(r[k] for k in KEYS) == key
    ]
    if not anchored:
        return None
    middle = float(np.median(anchored))
    if abs(math.log(middle)) >= abs(math.log(middle * float(row["ratio"]))):
        return None
    return (
        f"but the {len(anchored)} other backend(s) of its case moved with it (median "
        f"{middle:.3f}× against it): the host's pace, or a change they share; measure again"
    )


def gate(cmp: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """``cmp`` (`compare_runs`, with `anchor`'s columns) with each result's ``gate`` outcome
    and ``gate_reason``, less the results ``unsupported`` in both runs (a backend that
    cannot run the case there: nothing to judge). An anchor found slower alone is
    ``inconclusive`` where the rest of its case moved with it (`_case_moved_along`)."""
    both = (cmp["status_old"] == "unsupported") & (cmp["status_new"] == "unsupported")
    cmp = cmp[~both]  # a backend neither run could run here: nothing to judge
    rows = cmp.to_dict("records")
    judged = []
    for row in rows:
        outcome, why = gate_result(row, threshold)
        along = _case_moved_along(row, rows) if outcome == "regression" else None
        judged.append(("inconclusive", f"{why}, {along}") if along else (outcome, why))
    out = cmp.copy()
    out["gate"] = [outcome for outcome, _ in judged]
    out["gate_reason"] = [why for _, why in judged]
    return out


def overall(gated: pd.DataFrame) -> str:
    """The comparison's outcome: ``regression`` if any result is, else ``inconclusive`` if
    any result is, else ``pass`` (an empty comparison is ``inconclusive``: nothing showed
    anything)."""
    found = set(gated["gate"])
    if "regression" in found:
        return "regression"
    if "inconclusive" in found or not found:
        return "inconclusive"
    return "pass"
