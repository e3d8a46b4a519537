"""The regression gate of `convbench compare --fail-on-regression`: three outcomes per result and
for the whole comparison, each with its exit code (pure).

* ``regression`` — significantly slower (Mann–Whitney at ``alpha``) by more than the
  threshold, on evidence neither run flagged; or, flagged, by more than any disturbance has
  been seen to move a median (`BEYOND_DISTURBANCE`).
* ``pass`` — unflagged, and the 95% interval of the time ratio ends at or below
  ``1 + threshold``: the data rule out a regression as large as the threshold.
* ``inconclusive`` — the evidence could not have caught the threshold: a result a run flagged
  (disturbed, unsteady, off pace), an interval wider than the threshold, or a result not
  measured ``ok`` in both runs.

The gate never says ``pass`` on evidence that could not have shown the regression. The whole
comparison is ``regression`` if any result is, else ``inconclusive`` if any result is, else
``pass``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from convbench.analysis.compare import BEYOND_DISTURBANCE

OUTCOMES = ("pass", "regression", "inconclusive")
#: The exit code of `convbench compare --fail-on-regression` for each outcome (2 is a usage
#: error, as for every convbench command).
EXIT_CODES: Mapping[str, int] = {"pass": 0, "regression": 1, "inconclusive": 3}


def gate_result(row: Mapping, threshold: float) -> tuple[str, str]:
    """One compared result (a row of `compare_runs`) judged against ``threshold`` (0.05 =
    5%): its outcome and why, in words."""
    if row["verdict"] == "missing":
        return "inconclusive", (
            f"not measured ok in both runs ({row['status_old']} → {row['status_new']})"
        )
    ratio, high = float(row["ratio"]), float(row["ci_high"])
    limit = 1.0 + threshold
    flagged = bool(row.get("flagged"))
    figure = f"{ratio:.3f}× [{row['ci_low']:.3f}–{high:.3f}], p={row['p_value']:.2g}"
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


def gate(cmp: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """``cmp`` (`compare_runs`) with each result's ``gate`` outcome and ``gate_reason``."""
    judged = [gate_result(row, threshold) for row in cmp.to_dict("records")]
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
