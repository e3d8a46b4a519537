"""The winner map: per case and pass, the fastest backend within the dtype's tolerance, and
what it gains over the baseline. Pure: a results frame in, a frame out.

Two backends that dispatch to the same kernel family (the ``dispatch`` column: ``torch`` on a
CPU runs ``Mkldnn``, which is what ``onednn`` runs) are one kernel measured twice: where the
winner and the baseline are such a pair, ``same_kernel`` names the family and no one is
crowned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from convbench.analysis.compare import (
    KEYS,
    baseline_backend,
    default_tolerances,
    difference,
    ok_results,
)
from convbench.analysis.flags import is_flagged


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def same_kernel(winner: Mapping | None, baseline: Mapping | None) -> str | None:
    """The kernel family two different backends' results both dispatch to, else None."""
    if winner is None or baseline is None or winner["backend"] == baseline["backend"]:
        return None
    a, b = winner.get("dispatch"), baseline.get("dispatch")
    return str(a) if not _missing(a) and not _missing(b) and a == b else None


def winner_map(
    df: pd.DataFrame, tolerances: Mapping[str, float] | None = None, *, alpha: float = 0.05
) -> pd.DataFrame:
    """For each run × case × dtype × device × direction: the fastest backend (lowest median)
    whose ``rel_err`` is within the dtype's tolerance, and its speedup over the baseline
    (`baseline_backend`: the device's vendor backend, or ``torch`` where the vendor has no
    result; ``baseline_ms / winner_ms``, with significance).

    A dtype without a known tolerance is not checked. Columns: run_id, the `KEYS`, winner,
    winner_ms, rel_err, tolerance, baseline, baseline_ms, speedup, speedup_ci_low,
    speedup_ci_high, significant, p_value, candidates (backends within tolerance),
    rejected (backends measured but out of tolerance), flagged (the winner's or the
    baseline's result was measured disturbed), same_kernel (`same_kernel`: the kernel family
    the winner and a different baseline both dispatch to, else None; such a winner is one
    kernel measured twice, not a win).
    """
    tolerances = default_tolerances() if tolerances is None else tolerances
    rows = []
    for key, group in ok_results(df).groupby(["run_id", *KEYS], sort=False):
        row = dict(zip(["run_id", *KEYS], key, strict=True))
        dtype, device = row["dtype"], row["device"]
        limit = tolerances.get(dtype, math.inf)
        within = group[group["rel_err"].fillna(math.inf) <= limit]
        rejected = sorted(set(group["backend"]) - set(within["backend"]))
        row.update(tolerance=limit, candidates=len(within), rejected=", ".join(rejected))
        base = baseline_backend(group["backend"], device)
        base_rows = group[group["backend"] == base]
        row["baseline"] = base
        row["baseline_ms"] = base_rows["median_ms"].iloc[0] if len(base_rows) else math.nan
        if within.empty:
            row.update(winner=None, winner_ms=math.nan, rel_err=math.nan, speedup=math.nan)
            row.update(significant=False, p_value=math.nan, flagged=False, same_kernel=None)
            row.update(speedup_ci_low=math.nan, speedup_ci_high=math.nan)
            rows.append(row)
            continue
        best = within.loc[within["median_ms"].idxmin()]
        row.update(winner=best["backend"], winner_ms=best["median_ms"], rel_err=best["rel_err"])
        row["flagged"] = is_flagged(best) or (len(base_rows) > 0 and is_flagged(base_rows.iloc[0]))
        row["same_kernel"] = same_kernel(best, base_rows.iloc[0] if len(base_rows) else None)
        if len(base_rows) and best["backend"] != base:
            d = difference(best, base_rows.iloc[0], alpha=alpha)
            row.update(speedup=1 / d.ratio, significant=d.significant, p_value=d.p_value)
            row.update(speedup_ci_low=1 / d.ci_high, speedup_ci_high=1 / d.ci_low)
        else:
            same = len(base_rows) > 0
            row.update(speedup=1.0 if same else math.nan, significant=False, p_value=math.nan)
            row.update(speedup_ci_low=math.nan, speedup_ci_high=math.nan)
        rows.append(row)
    columns = ["run_id", *KEYS, "winner", "winner_ms", "rel_err", "tolerance", "baseline"]
    columns += ["baseline_ms", "speedup", "speedup_ci_low", "speedup_ci_high", "significant"]
    columns += ["p_value", "candidates", "rejected", "flagged", "same_kernel"]
    return pd.DataFrame(rows, columns=columns)
