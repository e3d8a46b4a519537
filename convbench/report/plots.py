"""The report's figures: one function per plot, each taking DataFrames and returning a
matplotlib `Figure`, so they work the same in a notebook and in the HTML report.

What they share (style, colours, labels, ticks, the SVG for inlining: `to_svg`) is in
`convbench.report.figure`. Data come from
`convbench.results.load` (``samples=True`` for `latency_distributions`) and the
`convbench.analysis` functions named in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from convbench.analysis import compare as analysis
from convbench.analysis.roofline import roof_gflops
from convbench.report.figure import (
    backend_palette,
    case_labels,
    decades_only,
    empty_figure,
    new_figure,
    ordered_backends,
    quiet,
)
from convbench.report.format import format_ratio, memory_unit

#: rel_err of exactly 0 is drawn at this floor on the log axis.
REL_ERR_FLOOR = 1e-17


@quiet
def speedup_heatmap(sp: pd.DataFrame, title: str | None = None) -> Figure:
    """Backend × case heatmap of speedups over the baseline (`analysis.speedups` rows).

    Colour is log2 of the speedup (blue: faster than the baseline, red: slower); each cell
    reads ``1.8×``, ``~`` when the difference is not significant and ``†`` when the backend's
    answer is outside the dtype's tolerance. Blank cells: not measured.
    """
    sp = sp[sp["speedup"].notna()]
    if sp.empty:
        return empty_figure("no speedups: the baseline or the other backends were not measured")
    sp = sp.assign(label=case_labels(sp))
    backends = [b for b in ordered_backends(sp["backend"])]
    labels = list(dict.fromkeys(sp["label"]))
    values = sp.pivot_table(index="backend", columns="label", values="speedup", aggfunc="first")
    values = values.reindex(index=backends, columns=labels)
    text = pd.DataFrame("", index=backends, columns=labels)
    for row in sp.itertuples():
        cell = format_ratio(row.speedup, row.significant)
        text.loc[row.backend, row.label] = cell + ("" if row.within_tol else " †")
    fig, (ax,) = new_figure(max(6.0, 2.4 + 0.8 * len(labels)), 2.6 + 0.45 * len(backends))
    logs = np.log2(values.astype(float))
    limit = max(1.0, min(6.0, float(np.nanmax(np.abs(logs.to_numpy())))))
    sns.heatmap(
        logs,
        ax=ax,
        cmap="RdBu",
        center=0.0,
        vmin=-limit,
        vmax=limit,
        annot=text.to_numpy(),
        fmt="",
        annot_kws={"fontsize": 7},
        linewidths=0.5,
        linecolor="white",
        cbar_kws={"label": "speedup", "shrink": 0.9},
    )
    colorbar = ax.collections[0].colorbar
    step = max(1, math.ceil(limit / 2))
    ticks = np.arange(-math.floor(limit / step) * step, limit + 1e-9, step)
    colorbar.set_ticks(ticks)
    colorbar.set_ticklabels([f"{2.0**t:g}×" if t >= 0 else f"1/{2.0**-t:g}×" for t in ticks])
    ax.set_facecolor("#eeeeee")
    ax.set_xlabel("")
    ax.set_ylabel("backend")
    ax.tick_params(axis="x", labelrotation=50, labelsize=8)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    baseline = ", ".join(dict.fromkeys(sp["baseline"]))
    ax.set_title(
        title or f"speedup over {baseline}  (~ not significant, † out of tolerance)", fontsize=9
    )
    return fig


#: The roofline's x range reaches this factor beyond each ridge point (peak / bandwidth), so
#: the bend of every roof is in view.
RIDGE_MARGIN = 4.0
NO_BANDWIDTH = "no memory bandwidth measured for this run: only the GEMM roof is drawn"


def roofs(points: pd.DataFrame) -> pd.DataFrame:
    """One row per device and dtype that has a measured GEMM peak: ``device``, ``dtype``,
    ``peak_gflops``, ``bandwidth_gbs`` (NaN where the run has none) and ``ridge`` (the
    intensity where the two roofs meet, NaN without a bandwidth)."""
    have = points.dropna(subset=["peak_gflops"])
    if "bandwidth_gbs" not in have:
        have = have.assign(bandwidth_gbs=np.nan)
    first = have.groupby(["device", "dtype"], sort=True)[["peak_gflops", "bandwidth_gbs"]].first()
    first = first.reset_index()
    return first.assign(ridge=first["peak_gflops"] / first["bandwidth_gbs"])


@quiet
def roofline(points: pd.DataFrame) -> Figure:
    """Achieved GFLOP/s against arithmetic intensity (FLOPs per compulsory byte), log–log,
    under the run's measured roofs per device and dtype (`analysis.roofline_points` rows):
    ``min(GEMM peak, memory bandwidth × intensity)``, both measured by
    `convbench.measure.peak`. A run without a bandwidth (older stores) gets the flat GEMM roof
    alone and says so in the title (`NO_BANDWIDTH`)."""
    if points.empty:
        return empty_figure("no measured results")
    fig, (ax,) = new_figure(7.5, 4.6)
    palette = backend_palette(points["backend"])
    sns.scatterplot(
        data=points,
        x="intensity_flop_per_byte",
        y="gflops",
        hue="backend",
        hue_order=list(palette),
        palette=palette,
        style="direction",
        s=45,
        ax=ax,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    table = roofs(points)
    _frame_roofs(ax, table)
    decades_only(ax)
    labelled: set[str] = set()  # one bandwidth label per device, whatever its dtypes
    for roof in table.itertuples():
        _draw_roof(ax, roof, label_bandwidth=roof.device not in labelled)
        labelled.add(roof.device)
    if table.empty:
        ax.set_title("no peak measured for this run (older run or peak failed)", fontsize=9)
    elif table["bandwidth_gbs"].isna().all():
        ax.set_title(NO_BANDWIDTH, fontsize=9)
    ax.set_xlabel("arithmetic intensity [FLOP/byte]")
    ax.set_ylabel("achieved [GFLOP/s]")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def _frame_roofs(ax, table: pd.DataFrame) -> None:
    """Widen the axes around the points so every roof's bend (its ridge point) and a label
    above the highest peak fit inside the frame."""
    if table.empty:
        return
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    ridges = table["ridge"].dropna()
    if len(ridges):
        x_low = min(x_low, float(ridges.min()) / RIDGE_MARGIN)
        x_high = max(x_high, float(ridges.max()) * RIDGE_MARGIN)
    top = float(table["peak_gflops"].max())
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(min(y_low, top / 20), max(y_high, 2.5 * top))


def _draw_roof(ax, roof, label_bandwidth: bool = True) -> None:
    """One device/dtype's roof, ``min(peak, bandwidth × intensity)``, across the frame, with
    its two figures written on it."""
    x_low, x_high = ax.get_xlim()
    xs = np.geomspace(x_low, x_high, 200)
    ys = [roof_gflops(roof.peak_gflops, roof.bandwidth_gbs, x) for x in xs]
    ax.plot(xs, ys, color="#333", linestyle="--", linewidth=1, scalex=False, scaley=False)
    ax.annotate(
        f"{roof.device} {roof.dtype} GEMM peak {roof.peak_gflops:.3g} GFLOP/s",
        (0.99, roof.peak_gflops),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=8,
    )
    if label_bandwidth and not math.isnan(roof.bandwidth_gbs):
        x = x_low * 1.3
        ax.annotate(
            f"{roof.device} memory bandwidth {roof.bandwidth_gbs:.3g} GB/s",
            (x, roof.bandwidth_gbs * x),
            xytext=(4, -6),  # below the rising line: it climbs away from the text
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=8,
        )


@quiet
def accuracy_vs_speed(df: pd.DataFrame, tolerances: Mapping[str, float] | None = None) -> Figure:
    """Relative error against median time, one panel per dtype, log–log; the dashed line and
    shaded band mark the dtype's tolerance (points above it are wrong answers)."""
    ok = analysis.ok_results(df)
    ok = ok[ok["rel_err"].notna()]
    if ok.empty:
        return empty_figure("no measured results")
    tolerances = analysis.default_tolerances() if tolerances is None else tolerances
    dtypes = sorted(ok["dtype"].unique())
    fig, axes = new_figure(max(6.5, 4.2 * len(dtypes)), 4.0, len(dtypes))
    palette = backend_palette(ok["backend"])
    for ax, dtype in zip(axes, dtypes, strict=True):
        part = ok[ok["dtype"] == dtype].assign(rel_err=lambda d: d["rel_err"].clip(REL_ERR_FLOOR))
        sns.scatterplot(
            data=part,
            x="median_ms",
            y="rel_err",
            hue="backend",
            hue_order=list(palette),
            palette=palette,
            style="direction",
            s=40,
            ax=ax,
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        limit = tolerances.get(dtype)
        if limit:
            ax.axhline(limit, color="#c0392b", linestyle="--", linewidth=1)
            ax.axhspan(
                limit, max(limit * 100, part["rel_err"].max() * 2), color="#c0392b", alpha=0.07
            )
        decades_only(ax)  # after the band, which widens the y range
        ax.set_title(f"{dtype} (tolerance {limit:g})" if limit else dtype, fontsize=10)
        ax.set_xlabel("median time [ms]")
        ax.set_ylabel("relative error (max|out−ref| / max|ref|)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@quiet
def peak_memory(df: pd.DataFrame, unit: tuple[str, int] | None = None) -> Figure:
    """Peak allocator memory above the baseline of one call, per case, one dot per backend
    (log scale) in ``unit`` (name, bytes): by default `format.memory_unit` of these results,
    which the report also gives its results table, so both read in the same unit."""
    ok = analysis.ok_results(df)
    ok = ok[ok["peak_mem_bytes"].notna() & (ok["peak_mem_bytes"] > 0)]
    if ok.empty:
        return empty_figure("no memory measurements")
    unit, scale = unit or memory_unit(ok["peak_mem_bytes"])
    ok = ok.assign(label=case_labels(ok), peak_mem=ok["peak_mem_bytes"] / scale)
    palette = backend_palette(ok["backend"])
    n_labels = ok["label"].nunique()
    fig, (ax,) = new_figure(8.0, 1.4 + 0.32 * n_labels)
    sns.stripplot(
        data=ok,
        y="label",
        x="peak_mem",
        hue="backend",
        hue_order=list(palette),
        palette=palette,
        orient="h",
        dodge=True,
        jitter=False,
        size=6,
        log_scale=True,
        ax=ax,
    )
    decades_only(ax, "x")
    ax.set_xlabel(f"peak memory above baseline [{unit}]")
    ax.set_ylabel("")
    ax.grid(True, axis="y", color="#eeeeee")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def has_gpu_telemetry(df: pd.DataFrame) -> bool:
    """Whether any measured result carries NVML utilisation or power readings."""
    ok = analysis.ok_results(df)
    return bool(ok["gpu_util_pct"].notna().any() or ok["power_w"].notna().any())


@quiet
def gpu_telemetry(df: pd.DataFrame) -> Figure:
    """GPU utilisation [%] and board power [W] during the timed window, per backend: one
    point per case, boxes across cases (NVML samples, see `convbench.measure.probes.nvml`)."""
    ok = analysis.ok_results(df)
    if not has_gpu_telemetry(df):
        return empty_figure("no GPU telemetry")
    palette = backend_palette(ok["backend"])
    fig, axes = new_figure(9.0, 3.6, 2)
    for ax, column, label in zip(
        axes, ("gpu_util_pct", "power_w"), ("GPU utilisation [%]", "power [W]"), strict=True
    ):
        part = ok[ok[column].notna()]
        if part.empty:
            ax.text(0.5, 0.5, f"no {label}", ha="center", transform=ax.transAxes)
            continue
        order = [b for b in palette if b in set(part["backend"])]
        sns.boxplot(
            data=part, x="backend", y=column, order=order, color="#dddddd", ax=ax, showfliers=False
        )
        sns.stripplot(
            data=part,
            x="backend",
            y=column,
            order=order,
            hue="backend",
            palette=palette,
            legend=False,
            size=4,
            ax=ax,
        )
        ax.set_ylabel(label)
        ax.set_xlabel("")
    return fig


@quiet
def latency_distributions(df: pd.DataFrame, max_labels: int = 40) -> Figure:
    """Distribution of the raw per-call samples (ms, log scale) of each case and backend:
    boxes show the quartiles, whiskers 1.5 IQR, dots the outliers. Needs ``samples_ms``
    (``results.load(..., samples=True)``); at most ``max_labels`` cases are drawn."""
    ok = analysis.ok_results(df)
    if "samples_ms" not in ok or ok.empty:
        return empty_figure("no raw samples")
    ok = ok.assign(label=case_labels(ok))
    keep = list(dict.fromkeys(ok["label"]))[:max_labels]
    ok = ok[ok["label"].isin(keep)]
    long = ok[["label", "backend", "samples_ms"]].explode("samples_ms").dropna()
    long["samples_ms"] = long["samples_ms"].astype(float)
    long = long[long["samples_ms"] > 0]
    if long.empty:
        return empty_figure("no raw samples")
    palette = backend_palette(long["backend"])
    fig, (ax,) = new_figure(8.0, 1.2 + 0.11 * len(keep) * len(palette) + 0.15 * len(keep))
    sns.boxplot(
        data=long,
        y="label",
        x="samples_ms",
        hue="backend",
        hue_order=list(palette),
        palette=palette,
        orient="h",
        log_scale=True,
        fliersize=1.5,
        linewidth=0.7,
        ax=ax,
    )
    decades_only(ax, "x")
    ax.set_xlabel("time per call [ms] (raw samples)")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
