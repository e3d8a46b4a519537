"""The HTML report: one self-contained file per run (or several runs side by side).

    from convbench.report import write_report
    path = write_report("results/convbench.sqlite")                 # latest run
    path = write_report(db, ["RUN_A", "RUN_B"], out="reports/ab.html")

`render_report` is the pure part (run records + results DataFrame in, HTML text out);
`write_report` is the edge that reads the store and writes the file. The page holds its CSS,
its figures (inline SVG, from `convbench.report.plots`) and a small sorting/filtering script,
so it opens offline and fetches nothing: its Content-Security-Policy forbids every request and
every script but its own (by hash). Every value from the store is escaped by jinja2
(autoescape on), so a case named ``<script>…</script>`` shows as text.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from convbench.analysis import compare as analysis
from convbench.analysis import modeltime
from convbench.analysis.roofline import roofline_points
from convbench.analysis.winners import winner_map
from convbench.report import plots
from convbench.report.environment import env_rows
from convbench.report.figure import to_svg
from convbench.report.format import format_ratio, memory_unit
from convbench.report.history import history_section
from convbench.report.plan import plan_view
from convbench.report.summary import case_summaries, flag_count, with_flags
from convbench.report.tables import (
    comparison_table,
    model_table,
    results_table,
    tune_tables,
    winner_summary,
    winner_table,
)
from convbench.store import STATUSES

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_DIR = Path("reports")

#: Each plot section: id, title, and how to read it (the README repeats these sentences).
SECTIONS = {
    "speedup": (
        "Speedup heatmap",
        "Each cell is one backend's speedup over the baseline (the device's vendor backend, or "
        "torch where the vendor has no result) on one case "
        "(blue: faster, red: slower, log colour scale); ~ marks a difference that is not "
        "significant, † an answer outside the dtype's tolerance, blank cells were not measured.",
    ),
    "roofline": (
        "Roofline",
        "Each point is one result: achieved GFLOP/s against its arithmetic intensity (FLOPs per "
        "byte it must at least move). The dashed roof is what this machine was measured to "
        "attain: its memory bandwidth (a large copy) times the intensity on the sloped part, "
        "its GEMM peak in that dtype on the flat part; the distance below it is the headroom "
        "left.",
    ),
    "accuracy": (
        "Accuracy vs speed",
        "Relative error against median time, one panel per dtype: the best trade-offs sit at "
        "the bottom left; a point in the red band above the dashed tolerance line is a wrong "
        "answer and never wins.",
    ),
    "memory": (
        "Peak memory",
        "Peak memory one call allocates above its inputs, per case and backend (log scale): "
        "where an algorithm buys speed with memory, such as im2col's column matrix.",
    ),
    "telemetry": (
        "GPU utilisation and power",
        "GPU utilisation and board power sampled by NVML during each timed window, per backend "
        "(one dot per case): low utilisation at high speed means a launch- or memory-bound "
        "kernel.",
    ),
    "latency": (
        "Latency distributions",
        "The raw per-call samples of each result (log scale): a narrow box is a stable "
        "measurement; a long tail or a second cluster means interference or frequency changes.",
    ),
}


def _read(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def environment() -> Environment:
    """The jinja2 environment: autoescape on for every template, undefined names are errors."""
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def script_hash(script: str) -> str:
    """The CSP source allowing exactly this inline script: ``sha256-<base64>``."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _panels(
    run_frames: Sequence[tuple[str, pd.DataFrame]], section: str, context: Mapping
) -> list[dict]:
    panels = []
    for run_id, df in run_frames:
        panel = {"run_id": run_id, "svg": None, "note": None}
        if section == "speedup":
            fig = plots.speedup_heatmap(context["speedups"][run_id])
        elif section == "roofline":
            points = roofline_points(df, context["peaks"])
            fig = plots.roofline(points)
            if not points.empty and points["bandwidth_gbs"].isna().all():
                panel["note"] = plots.NO_BANDWIDTH + _NO_BANDWIDTH_WHY
        elif section == "accuracy":
            fig = plots.accuracy_vs_speed(df, context["tolerances"])
        elif section == "memory":
            fig = plots.peak_memory(df, context["mem_unit"])
        elif section == "telemetry":
            if not plots.has_gpu_telemetry(df):
                panel["note"] = f"no GPU telemetry: {_telemetry_note(df)}"
                panels.append(panel)
                continue
            fig = plots.gpu_telemetry(df)
        else:
            fig = plots.latency_distributions(df)
        panel["svg"] = Markup(to_svg(fig))
        panels.append(panel)
    return panels


_NO_BANDWIDTH_WHY = (
    " (the run is from before convbench measured it, or its probe failed; the sloped memory "
    "roof needs it)"
)


def _telemetry_note(df: pd.DataFrame) -> str:
    cuda = df[df["device"].astype(str).str.startswith("cuda")]
    notes = [n for n in cuda["telemetry_note"].dropna().unique() if n]
    if notes:
        return "; ".join(notes[:3])
    if cuda.empty:
        return "this run measured no CUDA device (NVML samples GPUs only)"
    if not (cuda["status"] == "ok").any():
        return "no result on a CUDA device was measured (see the statuses below)"
    return "NVML gave no readings"


def render_report(
    runs: Sequence[Mapping],
    df: pd.DataFrame,
    *,
    db: str = "",
    tolerances: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    threshold: float = 0.05,
    now: _dt.datetime | None = None,
    tunes: Sequence[Mapping] = (),
    history: pd.DataFrame | None = None,
) -> str:
    """The report's HTML for ``runs`` (store run records, in display order) and their results
    ``df`` (`convbench.results.load` with ``samples=True``); ``history``: every run's results
    as `convbench.analysis.history.history` lines them up, for the history section."""
    tolerances = analysis.default_tolerances() if tolerances is None else tolerances
    run_ids = [run["run_id"] for run in runs]
    labels = {r: chr(ord("A") + i) for i, r in enumerate(run_ids)} if len(runs) > 1 else {}
    frames = [(r, df[df["run_id"] == r]) for r in run_ids]
    peaks = {run["run_id"]: run.get("peaks") or {} for run in runs}
    winners = with_flags(winner_map(df, tolerances, alpha=alpha), df)
    speedups = {r: analysis.speedups(f, alpha=alpha, tolerances=tolerances) for r, f in frames}
    mem_unit = memory_unit(analysis.ok_results(df)["peak_mem_bytes"])
    shared = {"speedups": speedups, "peaks": peaks, "tolerances": tolerances, "mem_unit": mem_unit}
    sections = [
        {"id": key, "title": title, "help": help_text, "panels": _panels(frames, key, shared)}
        for key, (title, help_text) in SECTIONS.items()
    ]
    comparisons = []
    for run_id, frame in frames[1:]:
        cmp = analysis.compare_runs(frames[0][1], frame, threshold=threshold, alpha=alpha)
        summary = analysis.comparison_summary(cmp, threshold)
        columns, rows = comparison_table(cmp)
        comparisons.append(
            {
                "old": f"run {labels[run_ids[0]]}",
                "new": f"run {labels[run_id]}",
                "geomean": format_ratio(summary["geomean_ratio"], summary["significant"]),
                "counts": [(v, n) for v, n in summary["counts"].items() if n],
                "columns": columns,
                "rows": rows,
            }
        )
    winner_columns, winner_rows = winner_table(winners, run_ids, labels)
    model = None
    if modeltime.has_layer_counts(df):
        model_columns, model_rows = model_table(modeltime.model_totals(df))
        model = {"columns": model_columns, "rows": model_rows}
    script = _read("report.js")
    title = ", ".join(f"{run.get('suite') or '?'} {run['run_id']}" for run in runs)
    now = now or _dt.datetime.now(_dt.UTC)
    context = {
        "title": title,
        "version": _version(),
        "generated_at": now.strftime("%Y-%m-%d %H:%M UTC"),
        "db": db,
        "runs": [
            {
                "run_id": (f"{labels[run['run_id']]} · " if labels else "") + run["run_id"],
                "env_rows": env_rows(run),
            }
            for run in runs
        ],
        "summary": {
            "cases": case_summaries(winners, labels),
            "flags": [
                {"run": labels.get(run["run_id"], ""), **flag_count(frame, run)}
                for run, (_, frame) in zip(runs, frames, strict=True)
            ],
        },
        "alpha": alpha,
        "resolution": analysis.RESOLUTION,
        "threshold_pct": f"{threshold * 100:g}%",
        "winners": {
            "columns": winner_columns,
            "rows": winner_rows,
            "summary": winner_summary(winners, labels),
        },
        "model": model,
        "sections": sections,
        "comparisons": comparisons,
        "statuses": STATUSES,
        "tunes": [dict(tune_tables(t), plan=plan_view(t)) for t in tunes],
        "history": _history(history, run_ids),
        "table": results_table(df, peaks, tolerances, labels, mem_unit),
        "css": Markup(_read("report.css")),
        "script": Markup(script),
        "script_hash": script_hash(script),
    }
    return environment().get_template("report.html.j2").render(context)


def _history(frame: pd.DataFrame | None, run_ids: Sequence[str]) -> dict | None:
    found = None if frame is None else history_section(frame, run_ids)
    if found is not None:
        found["svg"] = Markup(found["svg"])
    return found


def _version() -> str:
    import convbench

    return convbench.__version__


def default_path(run_ids: Sequence[str], directory: Path = DEFAULT_DIR) -> Path:
    """``reports/RUN.html``; several runs: ``reports/RUN_A_vs_RUN_B.html``."""
    return directory / ("_vs_".join(run_ids) + ".html")


def write_report(
    db: str | Path,
    run_ids: Sequence[str] | None = None,
    out: str | Path | None = None,
    **kwargs,
) -> Path:
    """Read ``run_ids`` (default: the latest run) from the store at ``db``, render the report
    and write it to ``out`` (default: `default_path`). Returns the path written."""
    from convbench.analysis.history import history
    from convbench.store.frames import load, open_results
    from convbench.store.frames import runs as runs_of

    store, owned = open_results(db)
    try:
        run_ids = list(dict.fromkeys(run_ids)) if run_ids else [store.latest_run_id()]
        runs = [store.run(r) for r in run_ids]  # a UserError names the known runs
        df = load(store, run_ids, samples=True)
        tunes = [t for r in run_ids for t in store.tunes(r)]
        kwargs.setdefault("history", history(load(store), runs_of(store)))
    finally:
        if owned:
            store.close()
    html = render_report(runs, df, db=str(db), tunes=tunes, **kwargs)
    path = Path(out) if out else default_path(run_ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
