"""Analysis of stored results: winners, speedups, significance, run-to-run comparison.

Pure pandas on the DataFrame `convbench.results.load` returns (with ``samples=True`` for the
raw per-call samples): every function takes values and returns values, no files, no terminal.

Significance of a timing difference between two results ``a`` and ``b`` (see `difference`):

* with raw samples on both sides, measured together in interleaved rounds (same
  ``round_group``, per-sample ``rounds``): van Elteren's stratified rank-sum test with the
  rounds as strata (`convbench.analysis.stats.stratified_rank_p`; method ``"rounds"``), so a
  slowdown of the whole machine during some rounds cannot fake a difference;
* with raw samples on both sides otherwise (two runs, or interleaving off): the two-sided
  Mann–Whitney U test on them (rank-based, no normality assumption) at level ``alpha``;
* in both cases the Hodges–Lehmann/Moses confidence interval of the time ratio ``a / b``
  (`convbench.analysis.stats.ratio_ci`);
* otherwise, with the medians' confidence intervals: significant when the intervals do not
  overlap; the ratio interval is then ``[a.ci_low / b.ci_high, a.ci_high / b.ci_low]``;
* with samples, a difference is significant only if, beyond the test, its ratio interval lies
  wholly outside the timing resolution (`RESOLUTION`): two backends that run one kernel
  measure up to that far apart (where each one's memory landed, its place in the rounds), so
  a smaller difference says nothing about the backends, however many samples show it;
* with neither: never significant (the ratio is still reported).

Ratios of times are ``a / b`` (> 1: ``a`` slower). Speedups are the inverse (> 1: faster).
A result not significant at ``alpha`` is marked ``~``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from convbench.analysis import stats
from convbench.analysis.flags import is_flagged
from convbench.problem.axes import TOLERANCE

#: The keys that make two results comparable within a run (one problem, one measurement).
KEYS = ("case", "dtype", "device", "direction", "layout")
#: The timing resolution: within one run, two backends that dispatch to the identical
#: kernel (``torch`` and ``onednn`` on the CPU) measure up to ~1–2% apart, case by case,
#: with rank-test p far below 0.05 (hundreds of samples). A time ratio whose interval
#: reaches inside ``[1 / (1 + RESOLUTION), 1 + RESOLUTION]`` is therefore not significant.
RESOLUTION = 0.02

#: The device's vendor library at its best first: the baseline speedups are measured against
#: by default (the first of these measured; ``onednn_packed`` runs the forward alone).
VENDOR_BACKENDS = {"cpu": ("onednn_packed", "onednn"), "cuda": ("cudnn",)}
#: Verdicts of `classify`, in display order.
VERDICTS = ("slower", "faster", "same", "ambiguous", "disturbed", "missing")


#: PyTorch's own dispatch: the baseline wherever the vendor backend has no result.
FALLBACK_BASELINE = "torch"


def baseline_backend(measured: Iterable[str], device: str) -> str:
    """The default baseline of one comparison: the device's vendor backend at its best
    where it was measured (`VENDOR_BACKENDS`), else ``torch`` (what a model runs today)."""
    measured = set(measured)
    found = [v for v in VENDOR_BACKENDS.get(str(device).split(":")[0], ()) if v in measured]
    return found[0] if found else FALLBACK_BASELINE


def vendor_backend(device: str) -> str | None:
    """The device's plain vendor backend: ``'onednn'`` for ``cpu``, ``'cudnn'`` for
    ``cuda``/``cuda:N``, else None."""
    found = VENDOR_BACKENDS.get(str(device).split(":")[0])
    return found[-1] if found else None


def default_tolerances() -> dict[str, float]:
    """`convbench.problem.axes.TOLERANCE` as a plain dict: the accuracy rule, by dtype name."""
    return dict(TOLERANCE)


def keyed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every one of the `KEYS`: a frame made before the layouts axis (a CSV
    export, a frame built by hand, rows without one) is in ``contiguous``."""
    if "layout" in df.columns and df["layout"].notna().all():
        return df
    layout = df["layout"] if "layout" in df.columns else pd.Series(None, df.index, object)
    return df.assign(layout=layout.astype(object).where(layout.notna(), "contiguous"))


def ok_results(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that were measured: status ``ok`` with a median time (`keyed`)."""
    df = keyed(df)
    return df[(df["status"] == "ok") & df["median_ms"].notna()]


# -- two results -------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """Time ratio ``a / b`` of two results and whether it is distinguishable from noise.

    ``ratio`` is the ratio of the medians; ``ci_low``/``ci_high`` its confidence interval (NaN
    when unknown); ``p_value`` the Mann–Whitney p (NaN without samples); ``method`` says which
    rule decided ``significant``: ``mannwhitney``, ``ci_overlap`` or ``none``.
    """

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    method: str


def _samples(row: Mapping) -> list[float]:
    value = row.get("samples_ms")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [float(s) for s in value if s > 0]


def _paired_rounds(a: Mapping, b: Mapping) -> tuple[list[int], list[int]] | None:
    """The rounds of two results measured together in interleaved rounds (one run, same
    ``round_group``, rounds stored for every sample), or None."""
    group_a, group_b = a.get("round_group"), b.get("round_group")
    if not isinstance(group_a, str) or group_a != group_b:
        return None
    if a.get("run_id") != b.get("run_id"):  # the same case in two runs: not timed together
        return None
    ra, rb = a.get("rounds"), b.get("rounds")
    if ra is None or rb is None or isinstance(ra, float) or isinstance(rb, float):
        return None
    if len(ra) != len(_samples(a)) or len(rb) != len(_samples(b)) or not len(ra):
        return None
    return [int(r) for r in ra], [int(r) for r in rb]


def _num(row: Mapping, name: str) -> float:
    value = row.get(name)
    return math.nan if value is None or pd.isna(value) else float(value)


def beyond_resolution(low: float, high: float) -> bool:
    """Whether the time-ratio interval ``[low, high]`` lies wholly outside the timing
    resolution band around 1 (`RESOLUTION`); False for an unknown (NaN) interval."""
    return bool(low > 1.0 + RESOLUTION or high < 1.0 / (1.0 + RESOLUTION))


def difference(
    a: Mapping, b: Mapping, *, alpha: float = 0.05, confidence: float = 0.95
) -> Difference:
    """Compare two result rows (``median_ms``, ``ci_low_ms``, ``ci_high_ms``, optional
    ``samples_ms``); see the module docstring for the rule."""
    med_a, med_b = _num(a, "median_ms"), _num(b, "median_ms")
    ratio = med_a / med_b if med_b > 0 else math.nan
    sa, sb = _samples(a), _samples(b)
    if sa and sb:
        rci = stats.ratio_ci(sa, sb, confidence)
        rounds = _paired_rounds(a, b)
        p, method = math.nan, "rounds"
        if rounds is not None:
            p = stats.stratified_rank_p(sa, sb, *rounds)
        if math.isnan(p):
            p, method = stats.mannwhitney_p(sa, sb), "mannwhitney"
        significant = bool(p < alpha) and beyond_resolution(rci.ci_low, rci.ci_high)
        return Difference(ratio, rci.ci_low, rci.ci_high, p, significant, method)
    lo_a, hi_a = _num(a, "ci_low_ms"), _num(a, "ci_high_ms")
    lo_b, hi_b = _num(b, "ci_low_ms"), _num(b, "ci_high_ms")
    if all(v > 0 for v in (lo_a, hi_a, lo_b, hi_b)):
        low, high = lo_a / hi_b, hi_a / lo_b
        return Difference(ratio, low, high, math.nan, bool(low > 1 or high < 1), "ci_overlap")
    return Difference(ratio, math.nan, math.nan, math.nan, False, "none")


def combined_ratio(
    ratios: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Geometric mean of ratios and its confidence interval from the per-ratio intervals.

    On log scale each interval gives a standard error ``(log high - log low) / (2 z)``; the
    mean of n independent logs has standard error ``sqrt(sum se²) / n``. This is the
    measurement noise of the geomean over these cases (not a claim about other cases). The
    interval is NaN when any ratio's interval is unknown.
    """
    logs = np.log(np.asarray(ratios, dtype=float))
    geo = float(np.exp(logs.mean())) if len(logs) else math.nan
    lo, hi = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
    if len(logs) == 0 or not (np.all(lo > 0) and np.all(hi > 0)):
        return geo, math.nan, math.nan
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    se = np.sqrt(np.sum(((np.log(hi) - np.log(lo)) / (2 * z)) ** 2)) / len(logs)
    return geo, float(np.exp(logs.mean() - z * se)), float(np.exp(logs.mean() + z * se))


# -- within a run ------------------------------------------------------------------------
def speedups(
    df: pd.DataFrame,
    baseline: str | None = None,
    backends: Iterable[str] | None = None,
    *,
    alpha: float = 0.05,
    tolerances: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per run × case × dtype × device × direction × backend: speedup over ``baseline``
    (default: `baseline_backend` — the device's vendor backend, or ``torch`` where the vendor
    has no result) = ``baseline_ms / backend_ms``, with its interval,
    p-value and significance (`difference`). ``within_tol`` says whether the backend's answer
    is within the dtype's tolerance; ``flagged`` whether either result was flagged
    ``disturbed`` when measured. Rows for the baseline itself are left out; a key whose
    baseline was not measured gives NaN speedups.
    """
    tolerances = default_tolerances() if tolerances is None else tolerances
    keep = None if backends is None else set(backends)
    rows = []
    for key, group in ok_results(df).groupby(["run_id", *KEYS], sort=False):
        base_name = baseline or baseline_backend(group["backend"], key[3])
        base = group[group["backend"] == base_name]
        for _, result in group.iterrows():
            name = result["backend"]
            if name == base_name or (keep is not None and name not in keep):
                continue
            row = dict(zip(["run_id", *KEYS], key, strict=True))
            limit = tolerances.get(key[2], math.inf)
            row.update(backend=name, baseline=base_name, median_ms=result["median_ms"])
            row["within_tol"] = bool(_num(result, "rel_err") <= limit)
            row["flagged"] = is_flagged(result) or (not base.empty and is_flagged(base.iloc[0]))
            if base.empty:
                row.update(baseline_ms=math.nan, speedup=math.nan, ci_low=math.nan)
                row.update(ci_high=math.nan, p_value=math.nan, significant=False)
            else:
                d = difference(result, base.iloc[0], alpha=alpha)
                row.update(baseline_ms=base["median_ms"].iloc[0], speedup=1 / d.ratio)
                row.update(ci_low=1 / d.ci_high, ci_high=1 / d.ci_low, p_value=d.p_value)
                row["significant"] = d.significant
            rows.append(row)
    columns = ["run_id", *KEYS, "backend", "baseline", "median_ms", "baseline_ms", "speedup"]
    columns += ["ci_low", "ci_high", "p_value", "significant", "within_tol", "flagged"]
    return pd.DataFrame(rows, columns=columns)


def baseline_label(baselines: Iterable[str]) -> str:
    """The baseline of a geometric mean over cases: its name, or, where the cases had
    different baselines (the vendor refused some), each with its count, most used first:
    ``onednn (6 cases), torch (1)``."""
    counts = pd.Series(list(baselines)).value_counts(sort=True)
    if len(counts) == 1:
        return str(counts.index[0])
    first, *rest = counts.items()
    parts = [
        f"{first[0]} ({first[1]} case{'s' if first[1] != 1 else ''})",
        *(f"{name} ({n})" for name, n in rest),
    ]
    return ", ".join(parts)


def geomean_speedups(sp: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Geometric mean of `speedups` per run × device × dtype × backend over the cases where
    the baseline was measured, with two intervals that answer two questions:

    * ``ci_low``/``ci_high`` (`combined_ratio`): the measurement noise of this geomean over
      *these* cases — narrow when every case was timed precisely, whatever their spread;
      ``significant`` when it lies wholly outside the resolution (`beyond_resolution`);
    * ``cases_ci_low``/``cases_ci_high``: a t-interval of the mean log speedup over the cases
      (n - 1 degrees of freedom) — where the geomean of *similar* cases would fall, i.e. what
      a reader can expect of shapes like these; wide when the cases disagree. NaN for fewer
      than two cases. ``min_speedup``/``max_speedup``: the slowest and fastest case.

    Columns: run_id, device, dtype, backend, baseline, n_cases, geomean_speedup, ci_low,
    ci_high, significant, cases_ci_low, cases_ci_high, min_speedup, max_speedup,
    n_significant (cases significant alone)."""
    from scipy import stats as sp_stats

    rows = []
    measured = sp[sp["speedup"].notna()]
    for key, group in measured.groupby(["run_id", "device", "dtype", "backend"], sort=False):
        geo, low, high = combined_ratio(group["speedup"], group["ci_low"], group["ci_high"])
        row = dict(zip(["run_id", "device", "dtype", "backend"], key, strict=True))
        row.update(baseline=baseline_label(group["baseline"]), n_cases=len(group))
        row["geomean_speedup"] = geo
        row.update(ci_low=low, ci_high=high, significant=beyond_resolution(low, high))
        logs = np.log(group["speedup"].to_numpy(dtype=float))
        if len(logs) >= 2:
            t = sp_stats.t.ppf(1 - (1 - confidence) / 2, len(logs) - 1)
            half = t * logs.std(ddof=1) / math.sqrt(len(logs))
            row.update(cases_ci_low=math.exp(logs.mean() - half))
            row.update(cases_ci_high=math.exp(logs.mean() + half))
        else:
            row.update(cases_ci_low=math.nan, cases_ci_high=math.nan)
        row.update(min_speedup=float(np.exp(logs.min())), max_speedup=float(np.exp(logs.max())))
        row["n_significant"] = int(group["significant"].sum())
        rows.append(row)
    columns = ["run_id", "device", "dtype", "backend", "baseline", "n_cases"]
    columns += ["geomean_speedup", "ci_low", "ci_high", "significant", "cases_ci_low"]
    columns += ["cases_ci_high", "min_speedup", "max_speedup", "n_significant"]
    return pd.DataFrame(rows, columns=columns)


# -- two runs ----------------------------------------------------------------------------
def classify(ratio: float, ci_low: float, ci_high: float, significant: bool, threshold: float):
    """Verdict on a time ratio ``new / old`` with a regression threshold (0.05 = 5 %).

    * ``slower``: significant and the ratio above ``1 + threshold``;
    * ``faster``: significant and the ratio below ``1 / (1 + threshold)``;
    * ``same``: the whole interval inside ``[1 / (1 + threshold), 1 + threshold]`` — any change
      is smaller than the threshold, and the data show it;
    * ``ambiguous``: anything else (too noisy to tell, or a real change below the threshold
      whose interval reaches past it).
    """
    if ratio is None or pd.isna(ratio):
        return "ambiguous"
    upper, lower = 1.0 + threshold, 1.0 / (1.0 + threshold)
    if significant and ratio > upper:
        return "slower"
    if significant and ratio < lower:
        return "faster"
    if not (pd.isna(ci_low) or pd.isna(ci_high)) and lower <= ci_low and ci_high <= upper:
        return "same"
    return "ambiguous"


#: A flagged result still gets its verdict when it changed by more than this factor: the
#: shifts of a shared VM's pace move medians by 10–50%, and the A/A pairs of `convbench
#: calibrate --gate` saw flagged medians of unchanged code move by up to 2.16×; a 3× change
#: is not noise.
BEYOND_DISTURBANCE = 3.0


def compare_runs(
    old: pd.DataFrame, new: pd.DataFrame, *, threshold: float = 0.05, alpha: float = 0.05
) -> pd.DataFrame:
    """Match the results of two runs by ``result_key`` (case, backend, dtype, device,
    direction) and classify each (`classify`); ratio = new / old time (> 1: slower).

    A result present in one run only, or not ``ok`` in both, is ``missing`` with both
    statuses shown. A result that either run flagged (``disturbed``: too few undisturbed
    samples, or an unsteady median) is ``disturbed``: its ratio is shown but not judged, and
    it never counts as a regression — measure it again on a quieter machine — unless the
    change is significant and beyond `BEYOND_DISTURBANCE` either way, more than any
    disturbance has been seen to move a median. Columns: the
    `KEYS`, backend, status_old, status_new, old_ms, new_ms, ratio, ci_low, ci_high, p_value,
    significant, method, verdict, flagged (either run flagged it), flag (their reasons).
    """
    columns = [*KEYS, "backend", "status_old", "status_new", "old_ms", "new_ms", "ratio"]
    columns += ["ci_low", "ci_high", "p_value", "significant", "method", "verdict"]
    columns += ["flagged", "flag"]
    old, new = keyed(old), keyed(new)
    o = old.drop_duplicates("result_key").set_index("result_key")
    n = new.drop_duplicates("result_key").set_index("result_key")
    rows = []
    for key in list(o.index) + [k for k in n.index if k not in o.index]:
        a = o.loc[key] if key in o.index else None
        b = n.loc[key] if key in n.index else None
        ref = a if a is not None else b
        row = {k: ref[k] for k in (*KEYS, "backend")}
        row["status_old"] = None if a is None else a["status"]
        row["status_new"] = None if b is None else b["status"]
        row["old_ms"] = math.nan if a is None else _num(a, "median_ms")
        row["new_ms"] = math.nan if b is None else _num(b, "median_ms")
        marked = [r for r in (a, b) if r is not None and r["status"] == "ok" and is_flagged(r)]
        row["flagged"] = bool(marked)
        row["flag"] = "; ".join(str(r.get("reason") or "disturbed") for r in marked) or None
        if row["status_old"] == "ok" and row["status_new"] == "ok":
            d = difference(b, a, alpha=alpha)
            row.update(ratio=d.ratio, ci_low=d.ci_low, ci_high=d.ci_high, p_value=d.p_value)
            row.update(significant=d.significant, method=d.method)
            row["verdict"] = classify(d.ratio, d.ci_low, d.ci_high, d.significant, threshold)
            beyond = d.ratio > BEYOND_DISTURBANCE or d.ratio < 1 / BEYOND_DISTURBANCE
            if (is_flagged(a) or is_flagged(b)) and not (beyond and d.significant):
                row["verdict"] = "disturbed"
        else:
            row.update(ratio=math.nan, ci_low=math.nan, ci_high=math.nan, p_value=math.nan)
            row.update(significant=False, method="none", verdict="missing")
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def comparison_summary(cmp: pd.DataFrame, threshold: float = 0.05) -> dict:
    """Verdict counts and the geometric-mean ratio (new / old) over matched results that
    neither run flagged."""
    matched = cmp[~cmp["verdict"].isin(["missing", "disturbed"])]
    geo, low, high = combined_ratio(matched["ratio"], matched["ci_low"], matched["ci_high"])
    significant = bool(low > 1 or high < 1)
    return {
        "counts": {v: int((cmp["verdict"] == v).sum()) for v in VERDICTS},
        "geomean_ratio": geo,
        "ci_low": low,
        "ci_high": high,
        "significant": significant,
        "verdict": classify(geo, low, high, significant, threshold),
        "threshold": threshold,
    }


def regressions(cmp: pd.DataFrame) -> pd.DataFrame:
    """The results that got significantly slower by more than the threshold."""
    return cmp[cmp["verdict"] == "slower"]
