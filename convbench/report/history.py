"""The report's history section: the results of the reported runs over every run of the store
that measured them (same host, same threads), with the change points found in them
(`convbench.analysis.history`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convbench.analysis.history import SERIES_KEYS, change_points
from convbench.report.figure import backend_palette, empty_figure, new_figure, quiet, to_svg
from convbench.report.tables import cell

#: Series drawn (those that changed most first); the table lists every one that stepped.
MAX_DRAWN = 12

HELP = (
    "Each line is one result (case, backend, dtype, device, pass, layout; one host and thread "
    "count) over every run of the store that measured it, oldest first: its median time per "
    "call (log scale). Hollow points were flagged when measured (disturbed, unsteady, off "
    "pace) and take no part in finding steps; a vertical tick marks a change point (PELT on "
    "the unflagged medians)."
)


def _label(key: tuple) -> str:
    named = dict(zip(SERIES_KEYS, key, strict=True))
    return f"{named['case']} · {named['backend']} · {named['direction']} · {named['layout']}"


@quiet
def history_figure(series: list[tuple[tuple, pd.DataFrame, list]]) -> Figure:
    """Median per run of each series (at most `MAX_DRAWN`), flagged points hollow, change
    points ticked."""
    if not series:
        return empty_figure("no result was measured in more than one run")
    names = [dict(zip(SERIES_KEYS, k, strict=True))["backend"] for k, _, _ in series]
    palette = backend_palette(names)
    fig, (ax,) = new_figure(8.0, 3.6)
    for key, s, changes in series:
        colour = palette[dict(zip(SERIES_KEYS, key, strict=True))["backend"]]
        x = np.arange(len(s))
        y = s["median_ms"].to_numpy(dtype=float)
        flagged = s["flagged"].to_numpy(dtype=bool)
        ax.plot(x, y, color=colour, linewidth=0.8, alpha=0.7, label=_label(key))
        ax.scatter(x[~flagged], y[~flagged], color=colour, s=14)
        ax.scatter(x[flagged], y[flagged], facecolors="none", edgecolors=colour, s=18)
        runs = list(s["run_id"])
        for change in changes:
            ax.axvline(runs.index(change.run_id) - 0.5, color=colour, linestyle=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("run (oldest first)")
    ax.set_ylabel("median time per call [ms]")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def history_section(frame: pd.DataFrame, run_ids) -> dict | None:
    """The section's figure and change-point table for the series the reported runs measured
    (``frame``: `convbench.analysis.history.history` of the store); None where no result of
    theirs was measured in another run."""
    found = []
    for key, s in frame.groupby(list(SERIES_KEYS), sort=False):
        if len(s) > 1 and set(s["run_id"]) & set(run_ids):
            found.append((key, s, change_points(s)))
    if not found:
        return None
    found.sort(key=lambda f: -max((abs(np.log(c.ratio)) for c in f[2]), default=0.0))
    columns = ["result", "runs", "flagged", "change points (first run after: after/before)"]
    rows = [
        [cell(_label(key)), cell(len(s)), cell(int(s["flagged"].sum())),
         cell("; ".join(f"{c.run_id}: {c.ratio:.3g}×" for c in changes) or "—")]
        for key, s, changes in found
    ]  # fmt: skip
    figure = to_svg(history_figure(found[:MAX_DRAWN]))
    return {"help": HELP, "svg": figure, "columns": columns, "rows": rows}
