"""Which backend each pass of each problem should run: the tuning decision, from measured
results (pure pandas, like the rest of `convbench.analysis`).

For every (case, dtype, device, pass), a candidate wins only if

* its answer is within the dtype's tolerance (`convbench.problem.axes.TOLERANCE`, or a
  tighter ``max_rel_err``), and
* it is **significantly** faster than the ``torch`` baseline — PyTorch's own dispatch, what
  the model runs today — by the same test `convbench compare` uses (Mann–Whitney U on the raw
  samples at ``alpha``, with the Hodges–Lehmann ratio and its interval).

Among the winners the lowest median is chosen. Otherwise — a tie, noise, or nothing accurate
— the pass stays on ``torch``: a tuned model never swaps for noise.

For training (``weight_changes``), every pass is charged its ``prepare_ms`` as well: after
each optimizer step the tuned layer re-prepares its weight (the Winograd filter transforms,
the filter spectra), so a backend whose pass wins only with the weight prepared once would
lose the step.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from convbench.analysis.compare import KEYS, difference, keyed, ok_results
from convbench.problem.axes import PASS_NAMES as PASSES
from convbench.problem.axes import TOLERANCE

BASELINE = "torch"
#: The passes a decision is made for (the directions that time one pass alone).


@dataclass(frozen=True)
class Decision:
    """The backend one pass of one problem runs. ``problem`` is `ConvProblem.key`; ``case``
    the suite case it was measured as; ``speedup`` is ``torch_ms / median_ms`` with its
    interval (1.0 and the reason when it stays on torch)."""

    problem: str
    case: str
    dtype: str
    device: str
    pass_: str
    backend: str
    median_ms: float | None
    torch_ms: float | None
    speedup: float
    speedup_ci: tuple[float, float] | None
    rel_err: float | None
    run_id: str
    reason: str
    options: dict = field(default_factory=dict)
    #: The layout it was measured in (`convbench.problem.layout`).
    layout: str = "contiguous"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.problem, self.dtype, self.device, self.pass_)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("pass_")
        return d


def _num(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _options(row) -> dict:
    text = row.get("options_json")
    return json.loads(text) if isinstance(text, str) and text else {}


def decide(
    df: pd.DataFrame,
    *,
    alpha: float = 0.05,
    max_rel_err: float | None = None,
    baseline: str = BASELINE,
    weight_changes: bool = False,
) -> list[Decision]:
    """One `Decision` per (run, case, dtype, device, pass, layout) of ``df``
    (`convbench.results.load` with ``samples=True``) whose direction is one of `PASSES`;
    ``weight_changes``: each pass is charged its ``prepare_ms`` (training, see the module
    docstring)."""
    decisions = []
    df = keyed(df)
    ok = ok_results(df)
    if weight_changes:
        ok = ok.apply(_with_prepare, axis=1)
    for key, group in df[df["direction"].isin(PASSES)].groupby(["run_id", *KEYS], sort=False):
        run_id, case, dtype, device, direction, layout = key
        problem = json.loads(group["problem_json"].iloc[0]) if "problem_json" in group else {}
        problem_key = _problem_key(problem)
        measured = ok.loc[ok.index.intersection(group.index)]
        limit = TOLERANCE.get(dtype, math.inf)
        if max_rel_err is not None:
            limit = min(limit, max_rel_err)
        base = measured[measured["backend"] == baseline]
        common = dict(problem=problem_key, case=case, dtype=dtype, device=device)
        common.update(pass_=direction, run_id=run_id, layout=layout)
        if base.empty:
            decisions.append(
                Decision(**common, backend=baseline, median_ms=None, torch_ms=None, speedup=1.0,
                         speedup_ci=None, rel_err=None,
                         reason=f"no {baseline} result to compare with: stays on {baseline}")
            )  # fmt: skip
            continue
        base_row = base.iloc[0]
        torch_ms = float(base_row["median_ms"])
        winners = []
        for _, row in measured.iterrows():
            if row["backend"] == baseline:
                continue
            if not (_num(row["rel_err"]) is not None and row["rel_err"] <= limit):
                continue
            d = difference(row, base_row, alpha=alpha)
            if d.significant and d.ratio < 1:
                winners.append((float(row["median_ms"]), row, d))
        if not winners:
            decisions.append(
                Decision(**common, backend=baseline, median_ms=torch_ms, torch_ms=torch_ms,
                         speedup=1.0, speedup_ci=None, rel_err=_num(base_row["rel_err"]),
                         reason="no candidate within tolerance is significantly faster",
                         options=_options(base_row))
            )  # fmt: skip
            continue
        median, row, d = min(winners, key=lambda w: w[0])
        ci = (1 / d.ci_high, 1 / d.ci_low) if d.ci_low > 0 else None
        decisions.append(
            Decision(**common, backend=row["backend"], median_ms=median, torch_ms=torch_ms,
                     speedup=1 / d.ratio, speedup_ci=ci, rel_err=_num(row["rel_err"]),
                     reason=f"fastest within tolerance, significantly faster than {baseline} "
                     f"(p={d.p_value:.2g})", options=_options(row))
        )  # fmt: skip
    return decisions


def _with_prepare(row: pd.Series) -> pd.Series:
    """The row as one training step sees it: every sample (and the median and its interval)
    longer by the pass's ``prepare_ms``, redone after each optimizer step."""
    prepare = _num(row.get("prepare_ms")) or 0.0
    if not prepare:
        return row
    row = row.copy()
    for name in ("median_ms", "ci_low_ms", "ci_high_ms"):
        if _num(row.get(name)) is not None:
            row[name] = row[name] + prepare
    samples = row.get("samples_ms")
    if isinstance(samples, list | tuple):
        row["samples_ms"] = [s + prepare for s in samples]
    return row


def _problem_key(fields: dict) -> str:
    from convbench.problem.spec import ConvProblem

    if not fields:
        return ""
    return ConvProblem(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}).key
