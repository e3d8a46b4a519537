"""A result's history over the runs of a store, and the change points in it (pure).

`history` lines up, for each case × backend × dtype × device × pass × layout measured on one
host with one thread count, the median of every run that measured it, in the order the runs
were made, flagged results marked. `change_points` finds where such a series steps, by PELT
(Killick, Fearnhead & Eckley, "Optimal detection of changepoints with a linear computational
cost", JASA 2012): the segmentation of the log medians that minimises the within-segment
squared deviations plus a penalty per change, solved exactly with pruning. The penalty is
BIC-like, ``PENALTY × σ² × log n``, with σ estimated from the series itself (the median
absolute difference of neighbours, robust to the steps), so a step is kept only where it
stands out of the run-to-run noise. Flagged medians take no part in finding the steps (they
say what the host did), but they are shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from convbench.analysis.compare import KEYS, keyed
from convbench.analysis.flags import is_flagged

#: The series of one result: the host and thread count, then the comparison keys and backend.
SERIES_KEYS = ("node", "threads", *KEYS, "backend")
#: Multiplier of the BIC penalty σ² log n per change.
PENALTY = 5.0
#: A change is reported only where the segments' medians differ by at least this factor.
MIN_STEP = 1.03


def history(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, run) with an ``ok`` result: `SERIES_KEYS`, run_id, created_at,
    median_ms, flagged; ordered by series, then run creation time. ``runs``: the store's runs
    (`convbench.results.runs`: run_id, created_at)."""
    ok = keyed(df[(df["status"] == "ok") & df["median_ms"].notna()]).copy()
    ok["threads"] = ok["threads"].fillna(ok.get("torch_threads")).fillna(0).astype(int)
    ok["node"] = ok["node"].fillna("")
    ok["flagged"] = [is_flagged(r) for r in ok.to_dict("records")]
    ok = ok.merge(runs[["run_id", "created_at"]], on="run_id", how="left")
    columns = [*SERIES_KEYS, "run_id", "created_at", "median_ms", "flagged"]
    return ok.sort_values([*SERIES_KEYS, "created_at"], kind="stable")[columns]


def _cost(cum: np.ndarray, cum2: np.ndarray, a: int, b: int) -> float:
    """Squared deviations of values[a:b] from their mean, from prefix sums."""
    n = b - a
    s = cum[b] - cum[a]
    return float(cum2[b] - cum2[a] - s * s / n)


def pelt(values: Sequence[float], penalty: float, min_size: int = 2) -> list[int]:
    """The change points (indexes where a new segment starts) minimising the summed
    within-segment squared deviations plus ``penalty`` per change (PELT, exact): ``F[t]``,
    the best cost of the first t values, over the last change s; a start s that cannot
    beat ``F[t]`` even before paying for a change is never a candidate again."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2 * min_size:
        return []
    cum = np.concatenate([[0.0], np.cumsum(x)])
    cum2 = np.concatenate([[0.0], np.cumsum(x * x)])
    best = [-penalty] + [math.inf] * n
    last = [0] * (n + 1)
    starts = [0]
    for t in range(min_size, n + 1):
        costs = {s: best[s] + _cost(cum, cum2, s, t) + penalty
                 for s in starts if t - s >= min_size}  # fmt: skip
        start = min(costs, key=costs.__getitem__)
        best[t], last[t] = costs[start], start
        starts = [s for s in starts if s not in costs or costs[s] - penalty <= best[t]]
        starts.append(t)
    points, t = [], n
    while t > 0:
        t = last[t]
        if t > 0:
            points.append(t)
    return sorted(points)


def noise(values: Sequence[float]) -> float:
    """σ of a series with steps: the median absolute difference of neighbours / (√2 ×
    0.6745), which a few steps do not move."""
    x = np.asarray(values, dtype=float)
    if len(x) < 3:
        return 0.0
    return float(np.median(np.abs(np.diff(x))) / (math.sqrt(2) * 0.6745))


@dataclass(frozen=True)
class Change:
    """A step in a series: the first run after it, and the segments' medians."""

    index: int
    run_id: str
    before_ms: float
    after_ms: float

    @property
    def ratio(self) -> float:
        return self.after_ms / self.before_ms


def change_points(series: pd.DataFrame, penalty: float = PENALTY) -> list[Change]:
    """The steps of one series (rows of `history` for one result, in run order), found on
    the unflagged medians' logs; each at least `MIN_STEP` between the segments' medians."""
    clean = series[~series["flagged"]]
    values = np.log(clean["median_ms"].to_numpy(dtype=float))
    sigma = noise(values)
    if len(values) < 4:
        return []
    floor = math.log(MIN_STEP) / 4  # a noiseless series still needs a step to stand out
    points = pelt(values, penalty * max(sigma, floor) ** 2 * math.log(len(values)))
    bounds = [0, *points, len(values)]
    pairs = zip(bounds, bounds[1:], strict=False)
    medians = [float(np.exp(np.median(values[a:b]))) for a, b in pairs]
    changes = []
    for i, point in enumerate(points):
        before, after = medians[i], medians[i + 1]
        if max(before, after) / min(before, after) >= MIN_STEP:
            changes.append(Change(point, str(clean["run_id"].iloc[point]), before, after))
    return changes
