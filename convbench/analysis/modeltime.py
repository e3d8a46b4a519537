"""Model-level totals: how long a whole model's convolutions take per backend, and with the
best backend chosen layer by layer.

Pure functions of a results DataFrame (`convbench.results.load`, `convbench.run`), which needs
the columns ``case, count, backend, device, dtype, direction, status, median_ms, rel_err``.
A suite made from a model records in ``count`` how many layers share each problem, so

* a backend's **model total** is ``Σ count × median_ms`` over the suite's cases, given only when
  the backend has an ``ok`` result for every case (otherwise the missing cases are listed);
* the **best per-layer mix** takes, per case, the fastest backend whose result is within the
  dtype's accuracy tolerance (`convbench.problem.axes.TOLERANCE` on ``rel_err``), and totals
  ``Σ count × best median``; its **speedup** over a backend is that backend's total / the mix's.

Totals are computed per group: ``device, dtype, direction, layout`` (``contiguous`` where
the frame has no layout), per ``run_id`` when the frame has one (two runs are two models'
worth of results), and per batch variant: cases expanded by a ``batch_sizes`` axis are named
``NAME@nB``, and each ``B`` is a model of its own.

    import convbench
    from convbench.analysis import modeltime
    df = convbench.results.load("results/convbench.sqlite", run="...")
    totals = modeltime.model_totals(df)      # one row per group × backend
    mix = modeltime.best_mix(df)             # one row per group × case: the chosen backend
    rich.print(modeltime.render(totals, mix))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import pandas as pd

from convbench.analysis.compare import keyed
from convbench.problem.axes import TOLERANCE, dtype_name
from convbench.problem.suite import BATCH_MARK

REQUIRED = ("case", "backend", "device", "dtype", "direction", "status", "median_ms", "rel_err")
BASE_KEYS = ("device", "dtype", "direction", "layout")
MIX = "best per-layer mix"

TOTAL_COLUMNS = (
    "backend",
    "batch_sizes",
    "n_cases",
    "n_layers",
    "n_ok",
    "n_missing",
    "missing",
    "n_out_of_tol",
    "total_ms",
    "mix_ms",
    "mix_speedup",
)
MIX_COLUMNS = ("case", "count", "backend", "median_ms", "weighted_ms", "n_candidates")


def _tolerances(tolerance: Mapping | None) -> Mapping:
    """dtype name -> limit on rel_err (`convbench.problem.axes.TOLERANCE` by default)."""
    tolerance = TOLERANCE if tolerance is None else tolerance
    return {dtype_name(k): float(v) for k, v in tolerance.items()}


def _prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks column(s) {', '.join(missing)}")
    out = df.reset_index(drop=True)  # a concat of frames repeats index labels
    if "count" not in out.columns:
        out["count"] = 1
    out["count"] = out["count"].fillna(1).astype(int)
    for column in ("median_ms", "rel_err"):  # all-None columns (nothing ok) come as objects
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    split = out["case"].astype(str).str.partition(BATCH_MARK)
    if "batch" in out.columns:  # the problem's own batch, shown (not a grouping key)
        out["batch_size"] = pd.to_numeric(out["batch"], errors="coerce")
    out["batch"] = split[2].where(split[1] != "", "")
    out = keyed(out)  # a frame built before the layouts axis is contiguous
    keys = (["run_id"] if "run_id" in out.columns else []) + [*BASE_KEYS, "batch"]
    dups = out.duplicated([*keys, "case", "backend"])
    if dups.any():
        row = out[dups].iloc[0]
        raise ValueError(
            f"more than one result for case {row['case']!r} on {row['backend']} "
            f"({row['device']}, {row['dtype']}, {row['direction']}); pass one result per case "
            "and backend (e.g. one run's, or keep run_id to total each run)"
        )
    return out, keys


def _within(frame: pd.DataFrame, limits: Mapping[str, float]) -> pd.Series:
    limit = frame["dtype"].map(lambda d: limits.get(str(d), math.inf)).astype(float)
    return (frame["status"] == "ok") & (frame["rel_err"] <= limit)


def best_mix(df: pd.DataFrame, tolerance: Mapping | None = None) -> pd.DataFrame:
    """Per group and case: the fastest ``ok`` backend within tolerance.

    Columns: the group keys (``[run_id], device, dtype, direction, batch``), then ``case,
    count, backend, median_ms, weighted_ms`` (= count × median_ms) and ``n_candidates``. A case
    no backend answers accurately has a missing (NA) backend and NaN times. ``batch`` is the variant
    (``"8"`` for ``NAME@n8``, ``""`` otherwise).
    A backend that does not run in a group at all — every task ``unsupported`` for one stated
    reason, like cudnn's "no CUDA device" on a CPU — has no row in `model_totals`.
    """
    data, keys = _prepare(df)
    limits = _tolerances(tolerance)
    good = data[_within(data, limits) & data["median_ms"].notna()]
    rows = []
    for key, group in data.groupby([*keys, "case"], sort=False, dropna=False):
        candidates = good.loc[good.index.intersection(group.index)]
        row = dict(zip([*keys, "case"], key, strict=True))
        row["count"] = int(group["count"].iloc[0])
        if candidates.empty:
            row.update(backend=None, median_ms=math.nan, weighted_ms=math.nan, n_candidates=0)
        else:
            best = candidates.loc[candidates["median_ms"].idxmin()]
            row.update(
                backend=best["backend"],
                median_ms=float(best["median_ms"]),
                weighted_ms=row["count"] * float(best["median_ms"]),
                n_candidates=len(candidates),
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *MIX_COLUMNS])


def model_totals(df: pd.DataFrame, tolerance: Mapping | None = None) -> pd.DataFrame:
    """Per group and backend: the model's convolution time and the mix's speedup over it.

    Columns: the group keys, then ``backend``, ``batch_sizes`` (the batch of the group's
    problems, comma-separated if they differ), ``n_cases, n_layers`` (Σ count), ``n_ok``,
    ``n_missing`` and ``missing`` (comma-separated names of cases without an ``ok`` result),
    ``n_out_of_tol`` (ok results outside the dtype's tolerance; they still count in the
    backend's own total), ``total_ms`` (Σ count × median_ms; NaN unless every case is ok),
    ``mix_ms`` (the best per-layer mix's total for the group; NaN if some case has no accurate
    result) and ``mix_speedup`` (total_ms / mix_ms; > 1 means the mix is faster).
    """
    data, keys = _prepare(df)
    limits = _tolerances(tolerance)
    mix_by_group = {
        key: float(g["weighted_ms"].sum()) if g["backend"].notna().all() else math.nan
        for key, g in best_mix(df, tolerance).groupby(keys, sort=False, dropna=False)
    }
    rows = []
    for key, group in data.groupby(keys, sort=False, dropna=False):
        cases = group.drop_duplicates("case")[["case", "count"]]
        gkey = dict(zip(keys, key, strict=True))
        mix_ms = mix_by_group[key]
        sizes = sorted({int(b) for b in group.get("batch_size", pd.Series()).dropna()})
        for backend, results in group.groupby("backend", sort=False):
            ok = results[(results["status"] == "ok") & results["median_ms"].notna()]
            if _absent_here(results):
                continue  # the backend does not run here at all (cudnn on a CPU): no total
            missing = [c for c in cases["case"] if c not in set(ok["case"])]
            total = math.nan
            if not missing:
                total = float((ok["count"] * ok["median_ms"]).sum())
            rows.append(
                {
                    **gkey,
                    "backend": backend,
                    "batch_sizes": ",".join(map(str, sizes)),
                    "n_cases": len(cases),
                    "n_layers": int(cases["count"].sum()),
                    "n_ok": len(ok),
                    "n_missing": len(missing),
                    "missing": ", ".join(missing),
                    "n_out_of_tol": int((~_within(ok, limits)).sum()),
                    "total_ms": total,
                    "mix_ms": mix_ms,
                    "mix_speedup": total / mix_ms if mix_ms > 0 else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=[*keys, *TOTAL_COLUMNS])


#: How backends say that they do not run on a device at all ("no CUDA device", "cudnn: CUDA
#: only, got device cpu", "fft: device mps not supported").
_DEVICE_REASON = re.compile(r"\bdevice\b|\b(CUDA|CPU) only\b")


def _absent_here(results: pd.DataFrame) -> bool:
    """Every task of a backend in a group ``unsupported`` for one reason, a device reason
    (`_DEVICE_REASON`): the backend does not run on this device at all, as opposed to cases
    it cannot do."""
    if not (results["status"] == "unsupported").all() or "reason" not in results:
        return False
    reasons = results["reason"]
    if not reasons.notna().all() or reasons.nunique() != 1:
        return False
    return bool(_DEVICE_REASON.search(str(reasons.iloc[0])))


def has_layer_counts(df: pd.DataFrame) -> bool:
    """Whether the results come from a suite that records layer counts (some count > 1)."""
    return "count" in df.columns and bool((df["count"].fillna(1) > 1).any())


def _fmt_ms(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.4g}"


def render(totals: pd.DataFrame, mix: pd.DataFrame | None = None, *, title: str | None = None):
    """A rich Table of `model_totals` (and, if given, the `best_mix` choices per group).

    One block per group: each backend's model total (or how many cases it misses), the mix's
    speedup over it, then the mix's own total and which backends it uses for how many layers.
    """
    from rich.table import Table

    group_keys = [c for c in totals.columns if c not in TOTAL_COLUMNS]
    mixes = dict(iter(mix.groupby(group_keys, sort=False, dropna=False))) if mix is not None else {}
    # a run id shared by every row goes in the title, not in every group's label
    constant = {"run_id"} if "run_id" in group_keys and totals["run_id"].nunique() == 1 else set()
    if title is None:
        title = "model convolution time (Σ count × median)"
        if constant:
            title += f", run {totals['run_id'].iloc[0]}"
    table = Table(title=title)
    for column in ("group", "backend", "layers", "total ms", "mix speedup", "note"):
        justify = "right" if column in ("layers", "total ms", "mix speedup") else "left"
        table.add_column(column, justify=justify)
    for key, group in totals.groupby(group_keys, sort=False, dropna=False):
        gkey = dict(zip(group_keys, key, strict=True))
        label = " · ".join(
            f"n={v}" if k == "batch" else str(v)
            for k, v in gkey.items()
            if v not in ("", None) and k not in constant
        )
        for i, row in enumerate(group.sort_values("total_ms", na_position="last").itertuples()):
            note = f"{row.n_missing} of {row.n_cases} cases missing" if row.n_missing else ""
            if row.n_out_of_tol:
                note = (note + "; " if note else "") + f"{row.n_out_of_tol} outside tolerance"
            speedup = "—" if math.isnan(row.mix_speedup) else f"{row.mix_speedup:.2f}×"
            table.add_row(
                label if i == 0 else "",
                row.backend,
                str(row.n_layers),
                _fmt_ms(row.total_ms),
                speedup,
                note,
            )
        first = group.iloc[0]
        table.add_row(
            "",
            f"[bold]{MIX}[/]",
            str(first.n_layers),
            _fmt_ms(first.mix_ms),
            "1.00×",
            _mix_note(mixes[key]) if key in mixes else "",
            end_section=True,
        )
    return table


def _mix_note(rows: pd.DataFrame) -> str:
    if rows["backend"].isna().any():
        return f"{int(rows['backend'].isna().sum())} cases without an accurate result"
    layers = rows.groupby("backend", sort=False)["count"].sum().sort_values(ascending=False)
    return ", ".join(f"{backend} ×{n}" for backend, n in layers.items())
