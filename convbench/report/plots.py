"""The report's figures: one function per plot, each taking DataFrames and returning a
matplotlib `Figure`, so they work the same in a notebook and in the HTML report.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot): no global figure
registry, no GUI backend, nothing left open; `to_svg` renders one for inlining. Data come from
`convbench.results.load` (``samples=True`` for `latency_distributions`) and the
`convbench.analysis` functions named in each docstring.
"""

from __future__ import annotations

import functools
import io
import math
import re
import warnings
from collections.abc import Iterable, Mapping

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from convbench.analysis import compare as analysis
from convbench.report.format import format_ratio

#: Backends in a fixed order, so each keeps its colour in every plot and every report.
BACKEND_ORDER = ("naive", "im2col", "fft", "winograd", "onednn", "cudnn")
STYLE = "whitegrid"
#: rel_err of exactly 0 is drawn at this floor on the log axis.
REL_ERR_FLOOR = 1e-17


def _quiet(plot):
    """Silence seaborn 0.13's deprecation notices under newer matplotlib (its internals, not
    ours: ``set_bad``, boxplot's ``vert``), which would otherwise repeat on every figure."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The set_bad function", PendingDeprecationWarning)
            warnings.filterwarnings("ignore", "vert: bool was deprecated")
            return plot(*args, **kwargs)

    return wrapper


def backend_palette(backends: Iterable[str]) -> dict[str, tuple]:
    """Colour per backend: the built-ins always get the same colour, others follow."""
    names = set(backends)
    extra = sorted(names - set(BACKEND_ORDER))
    order = [b for b in BACKEND_ORDER if b in names or b in BACKEND_ORDER] + extra
    colors = sns.color_palette("colorblind", len(order))
    return {name: colors[i] for i, name in enumerate(order) if name in names}


def case_labels(df: pd.DataFrame) -> pd.Series:
    """``case · direction``, plus dtype and device where the frame has more than one."""
    label = df["case"].astype(str) + " · " + df["direction"].astype(str)
    for column in ("dtype", "device"):
        if df[column].nunique() > 1:
            label = label + " · " + df[column].astype(str)
    return label


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _empty(message: str, width: float = 6.0) -> Figure:
    fig = Figure(figsize=(width, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555")
    return fig


@_quiet
def speedup_heatmap(sp: pd.DataFrame, title: str | None = None) -> Figure:
    """Backend × case heatmap of speedups over the baseline (`analysis.speedups` rows).

    Colour is log2 of the speedup (blue: faster than the baseline, red: slower); each cell
    reads ``1.8×``, ``~`` when the difference is not significant and ``†`` when the backend's
    answer is outside the dtype's tolerance. Blank cells: not measured.
    """
    sp = sp[sp["speedup"].notna()]
    if sp.empty:
        return _empty("no speedups: the baseline or the other backends were not measured")
    sp = sp.assign(label=case_labels(sp))
    backends = [b for b in _ordered(sp["backend"])]
    labels = list(dict.fromkeys(sp["label"]))
    values = sp.pivot_table(index="backend", columns="label", values="speedup", aggfunc="first")
    values = values.reindex(index=backends, columns=labels)
    text = pd.DataFrame("", index=backends, columns=labels)
    for row in sp.itertuples():
        cell = format_ratio(row.speedup, row.significant)
        text.loc[row.backend, row.label] = cell + ("" if row.within_tol else " †")
    fig, (ax,) = _figure(max(6.0, 2.4 + 0.8 * len(labels)), 2.6 + 0.45 * len(backends))
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


@_quiet
def roofline(points: pd.DataFrame) -> Figure:
    """Achieved GFLOP/s against arithmetic intensity (FLOPs per compulsory byte), log–log,
    with the run's measured GEMM peak per device and dtype as the compute roof
    (`analysis.roofline_points` rows). The memory roof is not drawn: bandwidth is not measured.
    """
    if points.empty:
        return _empty("no measured results")
    fig, (ax,) = _figure(7.5, 4.6)
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
    peaks = points.dropna(subset=["peak_gflops"]).groupby(["device", "dtype"])["peak_gflops"]
    if peaks.ngroups:  # room above the highest roof for its label, inside the frame
        low, high = ax.get_ylim()
        ax.set_ylim(low, max(high, 2.5 * float(peaks.first().max())))
    _decades_only(ax)
    for (device, dtype), peak in peaks.first().items():
        ax.axhline(peak, color="#333", linestyle="--", linewidth=1)
        ax.annotate(
            f"{device} {dtype} GEMM peak {peak:.3g} GFLOP/s",
            (0.01, peak),
            xycoords=("axes fraction", "data"),
            va="bottom",
            fontsize=8,
        )
    if peaks.ngroups == 0:
        ax.set_title("no peak measured for this run (older run or peak failed)", fontsize=9)
    ax.set_xlabel("arithmetic intensity [FLOP/byte]")
    ax.set_ylabel("achieved [GFLOP/s]")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


@_quiet
def accuracy_vs_speed(df: pd.DataFrame, tolerances: Mapping[str, float] | None = None) -> Figure:
    """Relative error against median time, one panel per dtype, log–log; the dashed line and
    shaded band mark the dtype's tolerance (points above it are wrong answers)."""
    ok = analysis.ok_results(df)
    ok = ok[ok["rel_err"].notna()]
    if ok.empty:
        return _empty("no measured results")
    tolerances = analysis.default_tolerances() if tolerances is None else tolerances
    dtypes = sorted(ok["dtype"].unique())
    fig, axes = _figure(max(6.5, 4.2 * len(dtypes)), 4.0, len(dtypes))
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
        _decades_only(ax)  # after the band, which widens the y range
        ax.set_title(f"{dtype} (tolerance {limit:g})" if limit else dtype, fontsize=10)
        ax.set_xlabel("median time [ms]")
        ax.set_ylabel("relative error (max|out−ref| / max|ref|)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@_quiet
def peak_memory(df: pd.DataFrame) -> Figure:
    """Peak allocator memory above the baseline of one call, per case, one dot per backend
    (log scale; KiB, MiB or GiB, whichever suits the median)."""
    ok = analysis.ok_results(df)
    ok = ok[ok["peak_mem_bytes"].notna() & (ok["peak_mem_bytes"] > 0)]
    if ok.empty:
        return _empty("no memory measurements")
    unit, scale = next(
        (u, f)
        for u, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))
        if ok["peak_mem_bytes"].median() >= f
    )
    ok = ok.assign(label=case_labels(ok), peak_mem=ok["peak_mem_bytes"] / scale)
    palette = backend_palette(ok["backend"])
    n_labels = ok["label"].nunique()
    fig, (ax,) = _figure(8.0, 1.4 + 0.32 * n_labels)
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
    _decades_only(ax, "x")
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


@_quiet
def gpu_telemetry(df: pd.DataFrame) -> Figure:
    """GPU utilisation [%] and board power [W] during the timed window, per backend: one
    point per case, boxes across cases (NVML samples, see `convbench.measure.probes.nvml`)."""
    ok = analysis.ok_results(df)
    if not has_gpu_telemetry(df):
        return _empty("no GPU telemetry")
    palette = backend_palette(ok["backend"])
    fig, axes = _figure(9.0, 3.6, 2)
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


@_quiet
def latency_distributions(df: pd.DataFrame, max_labels: int = 40) -> Figure:
    """Distribution of the raw per-call samples (ms, log scale) of each case and backend:
    boxes show the quartiles, whiskers 1.5 IQR, dots the outliers. Needs ``samples_ms``
    (``results.load(..., samples=True)``); at most ``max_labels`` cases are drawn."""
    ok = analysis.ok_results(df)
    if "samples_ms" not in ok or ok.empty:
        return _empty("no raw samples")
    ok = ok.assign(label=case_labels(ok))
    keep = list(dict.fromkeys(ok["label"]))[:max_labels]
    ok = ok[ok["label"].isin(keep)]
    long = ok[["label", "backend", "samples_ms"]].explode("samples_ms").dropna()
    long["samples_ms"] = long["samples_ms"].astype(float)
    long = long[long["samples_ms"] > 0]
    if long.empty:
        return _empty("no raw samples")
    palette = backend_palette(long["backend"])
    fig, (ax,) = _figure(8.0, 1.2 + 0.11 * len(keep) * len(palette) + 0.15 * len(keep))
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
    _decades_only(ax, "x")
    ax.set_xlabel("time per call [ms] (raw samples)")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def _ordered(backends: Iterable[str]) -> list[str]:
    return list(backend_palette(backends))


_XML_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.S)
_XML_COMMENT = re.compile(r"<!--.*?-->", re.S)


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element for inlining in HTML: text drawn as paths (no font
    needed), no XML prologue, no comments (matplotlib writes each text string into one)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": None}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = _XML_COMMENT.sub("", _XML_PROLOGUE.sub("", buf.getvalue(), count=1))
    if re.search(r"<script|\son\w+\s*=", svg, re.I):  # never expected from matplotlib
        raise ValueError("refusing to inline an SVG that contains script")
    return svg.strip()


def _decades_only(ax, axes: str = "xy") -> None:
    """Label log axes (``axes``: which) in plain numbers at steps that suit their span:
    every decade on long axes, 1-2-5 on short ones, 1-1.5-2-3-5-7 within about a decade
    (where decades alone would leave one or two ticks). matplotlib's default also labels
    minor ticks (2×10⁰, 3×10⁰ …) on short axes, and they collide."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    chosen = [(ax.xaxis, ax.get_xlim())] if "x" in axes else []
    chosen += [(ax.yaxis, ax.get_ylim())] if "y" in axes else []
    for axis, (low, high) in chosen:
        decades = math.log10(high / low) if low > 0 and high > low else 0.0
        if decades <= 1.2:
            subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
        elif decades <= 2.5:
            subs = (1.0, 2.0, 5.0)
        else:
            subs = (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
