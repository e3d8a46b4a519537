"""What every report figure shares: the seaborn style, one colour per backend, case labels,
empty-figure placeholders, readable log-axis ticks, and the SVG the page inlines.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot): no global figure
registry, no GUI backend, nothing left open.
"""

from __future__ import annotations

import functools
import io
import math
import re
import warnings
from collections.abc import Iterable

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

#: Backends in a fixed order, so each keeps its colour in every plot and every report.
BACKEND_ORDER = ("naive", "im2col", "fft", "winograd", "onednn", "onednn_packed", "cudnn")
STYLE = "whitegrid"


def quiet(plot):
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
    """``case · direction``, plus dtype, device and layout where the frame has more than
    one."""
    label = df["case"].astype(str) + " · " + df["direction"].astype(str)
    for column in ("dtype", "device", "layout"):
        if column in df and df[column].nunique() > 1:
            label = label + " · " + df[column].astype(str)
    return label


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def empty_figure(message: str, width: float = 6.0) -> Figure:
    fig = Figure(figsize=(width, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555")
    return fig


def ordered_backends(backends: Iterable[str]) -> list[str]:
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


def decades_only(ax, axes: str = "xy") -> None:
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
