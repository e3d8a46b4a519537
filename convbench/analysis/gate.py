"""The regression gate of `convbench compare --fail-on-regression`: three outcomes per result and
for the whole comparison, each with its exit code (pure).

A result is judged against **anchors** where it has them: the library backends of its case
(vendor kernels: ``dispatch`` recorded) and always the case's baseline backend, timed in the
same interleaved rounds in both runs (`anchor`). Its time relative to an anchor, round by
round, does not move with the host's pace, which changes by 20–40% between minutes on a
shared VM and which the guest cannot see; so a flagged run still gives evidence. The median
over several anchors does not move with one anchor's jitter between runs. The baseline
itself, and a case without anchors, is judged on its own time.

* ``regression`` — anchored: slower than its anchors by more than the threshold, the
  interval above 1. Alone: significantly slower (Mann–Whitney at ``alpha``) by more than
  the threshold, on evidence neither run flagged, or, flagged, by more than any disturbance
  has been seen to move a median (`BEYOND_DISTURBANCE`).
* ``pass`` — the 95% interval of the ratio (anchored, or alone and unflagged) ends at or
  below ``1 + threshold``: the data rule out a regression as large as the threshold.
* ``inconclusive`` — the evidence could not have caught the threshold: an interval wider
  than it, a result alone that a run flagged (disturbed, unsteady, off pace), or a result
  not measured ``ok`` in both runs.

The gate never says ``pass`` on evidence that could not have shown the regression: a change
that slows a backend and its anchors alike is not in the anchored ratio, and it shows in the
baseline's own row, which the whole comparison includes. The whole comparison is
``regression`` if any result is, else ``inconclusive`` if any result is, else ``pass``.
`convbench calibrate --gate` measures its false-alarm and detection rates on this machine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

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


#: The fewest shared rounds from which `round_ratio` takes one figure per round; with fewer
#: (a store from before `TimingConfig.min_rounds` was 20) it takes one per sample.
MIN_ROUNDS = 6


def round_ratio(x: Mapping, anchor: Mapping, confidence: float = 0.95) -> tuple[float, ...]:
    """``x / anchor`` for two results timed in the same interleaved rounds: in each round,
    the median of ``x``'s samples over the anchor's median, then the median of these ratios
    with its order-statistic interval (`convbench.analysis.stats.median_ci`). A pace the
    host keeps for a round moves a sample and its round's anchor alike, so it cancels. The
    round is the unit: a fast kernel's samples of one round are taken within milliseconds
    and move together, so counted one by one they would give an interval too narrow (the
    ratio then moves between runs by more than it says). With fewer than `MIN_ROUNDS`
    shared rounds, one ratio per sample. NaNs without shared rounds."""
    rounds = _paired_rounds(x, anchor)
    if rounds is None:
        return math.nan, math.nan, math.nan
    medians = [
        _round_medians(_samples(r), marks) for r, marks in ((x, rounds[0]), (anchor, rounds[1]))
    ]
    shared = medians[0].keys() & medians[1].keys()
    if len(shared) >= MIN_ROUNDS:
        logs = [math.log(medians[0][m] / medians[1][m]) for m in shared]
    else:
        logs = [
            math.log(value / medians[1][mark])
            for value, mark in zip(_samples(x), rounds[0], strict=True)
            if mark in medians[1]
        ]
    low, high = stats.median_ci(logs, confidence) if logs else (math.nan, math.nan)
    if math.isnan(low):
        return math.nan, math.nan, math.nan
    return math.exp(float(np.median(logs))), math.exp(low), math.exp(high)


def _round_medians(samples: Sequence[float], marks: Sequence[int]) -> dict[int, float]:
    """Each round's median of ``samples`` (``marks``: the round of each)."""
    by_round: dict[int, list[float]] = defaultdict(list)
    for value, mark in zip(samples, marks, strict=True):
        by_round[mark].append(value)
    return {mark: float(np.median(values)) for mark, values in by_round.items()}


def _anchored(old: tuple[Mapping, Mapping], new: tuple[Mapping, Mapping]) -> tuple[float, ...]:
    """(result, anchor) in the old run and in the new → the new `round_ratio` over the old,
    with an interval that adds the two intervals' log half-widths in quadrature."""
    (r0, lo0, hi0), (r1, lo1, hi1) = round_ratio(*old), round_ratio(*new)
    if any(math.isnan(v) for v in (r0, lo0, hi0, r1, lo1, hi1)):
        return math.nan, math.nan, math.nan
    ratio = r1 / r0
    half = math.hypot(math.log(hi0 / lo0), math.log(hi1 / lo1)) / 2
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def _against(pairs: list[tuple], refs: Sequence[str]) -> tuple[float, ...]:
    """One result's `_anchored` figure against each of ``refs`` (``pairs``: per side, the
    rows by backend), combined: the median of the log ratios, and the median of the
    intervals' log half-widths. A reference that jittered in one run moves one of the
    ratios, not their median."""
    found = [
        f for f in (_anchored(*[(side[0], side[1][r]) for side in pairs]) for r in refs)
        if not math.isnan(f[0])
    ]  # fmt: skip
    if not found:
        return math.nan, math.nan, math.nan
    ratio = math.exp(float(np.median([math.log(f[0]) for f in found])))
    half = float(np.median([math.log(f[2] / f[1]) / 2 for f in found]))
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def anchor(cmp: pd.DataFrame, old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``cmp`` (`compare_runs` of ``old`` and ``new``, with raw samples) with each result's
    time relative to anchors timed beside it, new run over old (`_against`): the case's
    library backends (those whose vendor kernel is recorded, ``dispatch``) measured ``ok``
    in both runs, other than itself, and always its baseline backend (`baseline_backend`),
    whose own row gets none: it is judged alone, with ``case_ratio`` its figure against the
    rest of its case. A host that changed pace between the runs moves a raw ratio, not an
    anchored one; one anchor's jitter between runs moves one of a result's ratios, not
    their median; a change in the baseline itself shows in its own row."""
    sides = [
        {(tuple(r[k] for k in KEYS), r["backend"]): r for r in keyed(f).to_dict("records")
         if r["status"] == "ok"}
        for f in (old, new)
    ]  # fmt: skip
    in_both: dict[tuple, set] = defaultdict(set)
    library: dict[tuple, set] = defaultdict(set)
    for key, backend in sides[0].keys() & sides[1].keys():
        in_both[key].add(backend)
        if isinstance(sides[1][(key, backend)].get("dispatch"), str):
            library[key].add(backend)
    columns: dict[str, list] = {name: [] for name in (*ANCHORED, "case_ratio")}
    for row in cmp.to_dict("records"):
        key, backend = tuple(row[k] for k in KEYS), row["backend"]
        name = baseline_backend(in_both[key], row["device"]) if in_both[key] else None
        pairs = [(side.get((key, backend)), {b: side[(key, b)] for b in in_both[key]})
                 for side in sides]  # fmt: skip
        refs: list[str] = []
        if name not in (None, backend) and backend in in_both[key]:
            refs = sorted(({name} | library[key]) & in_both[key] - {backend})
        figures = _against(pairs, refs)
        others = sorted(in_both[key] - {backend})
        case = _against(pairs, others)[0] if backend == name else math.nan
        columns["anchor"].append(None if math.isnan(figures[0]) else ", ".join(refs))
        for column, value in zip(ANCHORED[1:], figures, strict=True):
            columns[column].append(value)
        columns["case_ratio"].append(case)
    return _widened(cmp.assign(**columns))


#: The fewest anchored results from which `_widened` estimates the spread between runs.
MIN_SPREAD_RESULTS = 5


#: The fewest anchored results a backend needs for `_deviations` to centre them on its median.
MIN_BACKEND_RESULTS = 2


def _deviations(cmp: pd.DataFrame) -> np.ndarray:
    """The anchored log ratios less each backend's own median over its cases, scaled by
    √(n/(n−1)) for the median they lost; a backend with fewer than `MIN_BACKEND_RESULTS`
    gives none. A change slows a backend across its cases; it moves that backend's median,
    not these deviations, which are the jitter between runs. (Centred on the comparison's
    median instead, a backend that a change slowed would widen every interval.)"""
    rows = cmp.dropna(subset=["anchored_ratio"])
    logs = np.log(rows["anchored_ratio"].to_numpy(dtype=float))
    groups = rows["backend"].to_numpy() if "backend" in rows else np.zeros(len(logs))
    found = [np.empty(0)]
    for name in set(groups):
        mine = logs[groups == name]
        if (n := len(mine)) >= MIN_BACKEND_RESULTS:
            found.append((mine - np.median(mine)) * math.sqrt(n / (n - 1)))
    return np.concatenate(found)


def _widened(cmp: pd.DataFrame) -> pd.DataFrame:
    """Anchored intervals widened by whatever spread between runs they do not already hold.
    Taken over 20 rounds (`TimingConfig.min_rounds`) one figure a round, the intervals held
    the runs' scatter on the development VM (`convbench calibrate --gate`: nothing added);
    over 3 rounds, one figure a sample, a ratio moved by about 2% from run to run beyond
    them. A store, or a host, where they do not is caught here. Its size: the robust spread
    (1.4826 × the median absolute deviation) of the comparison's `_deviations`, less the
    part of it that each result's own interval already holds (the median within-run
    variance, taken off in quadrature), added in quadrature to each interval's half-width
    at 95%. Needs `MIN_SPREAD_RESULTS` anchored results; ``anchored_spread`` says what was
    added (0 with fewer)."""
    found = _deviations(cmp)
    spread = 0.0
    if len(found) >= MIN_SPREAD_RESULTS:
        rows = cmp.dropna(subset=["anchored_ratio"])
        within = np.log(rows["anchored_high"] / rows["anchored_low"]).to_numpy(float) / 3.92
        total = 1.4826 * float(np.median(np.abs(found)))
        spread = math.sqrt(max(0.0, total**2 - float(np.median(within**2))))
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
    names = str(row["anchor"]).split(", ")
    anchors = names[0] if len(names) == 1 else f"the median of {', '.join(names)}"
    against = f"{_figure(ratio, low, high)} against {anchors} timed beside it"
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
    if not math.isnan(high) and max(high, ratio) <= limit:  # the medians' ratio too: it
        # is another estimate than the interval's (Hodges–Lehmann) and can lie outside it
        return "pass", f"95% CI ends at {high:.3f}× ≤ {limit:.3f}×"
    return "inconclusive", (
        f"95% CI reaches {high:.3f}×, past {limit:.3f}×: too noisy to rule out a "
        f"{threshold:.0%} regression"
    )


def _case_moved_along(row: Mapping, threshold: float) -> str | None:
    """For a baseline judged slower alone: did the rest of its case move with it? Its
    ``case_ratio`` (`anchor`) within ``threshold`` says the whole case moved — the host's
    pace, or a change they all share —, which one pair of runs cannot tell apart; says so
    in words, else None."""
    case = row.get("case_ratio", math.nan)
    if case is None or math.isnan(case) or case > 1.0 + threshold:
        return None
    return (
        f"but the rest of its case moved with it ({case:.3f}× against it): the host's pace, "
        "or a change they share; measure again"
    )


def gate(cmp: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """``cmp`` (`compare_runs`, with `anchor`'s columns) with each result's ``gate`` outcome
    and ``gate_reason``, less the results ``unsupported`` in both runs (a backend that
    cannot run the case there: nothing to judge). An anchor found slower alone is
    ``inconclusive`` where the rest of its case moved with it (`_case_moved_along`)."""
    both = (cmp["status_old"] == "unsupported") & (cmp["status_new"] == "unsupported")
    cmp = cmp[~both]  # a backend neither run could run here: nothing to judge
    judged = []
    for row in cmp.to_dict("records"):
        outcome, why = gate_result(row, threshold)
        along = _case_moved_along(row, threshold) if outcome == "regression" else None
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
