"""The report's tables as plain data: header lists and rows of cells for the template.

A cell is ``{"text": shown text, "v": sort value or None, "cls": CSS class or None}``; the
template escapes ``text`` and the page's script sorts on ``v`` (numbers) or the text. Pure:
DataFrames and run records in, lists and dicts out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from convbench.analysis import compare as analysis
from convbench.analysis.flags import is_flagged
from convbench.report.format import (
    fmt,
    format_ratio,
    format_time,
    format_unmatched,
    missing,
)
from convbench.store import columns


def cell(value, *, text: str | None = None, cls: str | None = None, digits: int = 4) -> dict:
    number = None
    if not missing(value) and isinstance(value, int | float) and not isinstance(value, bool):
        number = repr(float(value))
    shown = fmt(value, digits) if text is None else text
    if number is not None and cls is None:
        cls = "num"
    return {"text": shown, "v": number, "cls": cls}


def winner_table(
    winners: pd.DataFrame, run_ids: Sequence[str], labels: Mapping[str, str]
) -> tuple[list[str], list[list[dict]]]:
    """Winner map rows: the case keys, then per run the winner, its time, the baseline's time,
    the speedup (``~`` if not significant) and the backends out of tolerance. ``winners`` may
    carry ``same_kernel`` (`convbench.analysis.winners.winner_map`)."""
    per_run = ["winner", "median [ms]", "baseline", "baseline [ms]", "speedup", "rel. error"]
    per_run += ["out of tolerance"]
    columns = list(analysis.KEYS)
    for run_id in run_ids:
        prefix = f"{labels[run_id]}: " if labels else ""
        columns += [prefix + name for name in per_run]
    keys = list(analysis.KEYS)
    by_run = {r: winners[winners["run_id"] == r].set_index(keys) for r in run_ids}
    rows = []
    for key in dict.fromkeys(tuple(k) for k in winners[keys].itertuples(index=False)):
        row = [cell(part) for part in key]
        for run_id in run_ids:
            frame = by_run[run_id]
            if key not in frame.index:
                row += [cell(None) for _ in per_run]
                continue
            row += _winner_cells(frame.loc[key])
        rows.append(row)
    return columns, rows


def _winner_cells(w: Mapping) -> list[dict]:
    """One run's cells of a winner map row; a winner that runs the baseline's own kernel
    (`convbench.analysis.winners.same_kernel`) is not crowned over it."""
    kernel = w.get("same_kernel")
    winner = w["winner"] or "none within tolerance"
    speed = format_ratio(w["speedup"], w["significant"])
    if not missing(kernel):
        winner = f"{w['winner']}: same kernel as baseline ({kernel})"
        speed = f"same kernel ({format_ratio(w['speedup'], w['significant'])})"
    elif w["winner"] is not None and w["winner"] == w["baseline"]:
        speed = "1× (baseline)"
    if w.get("flagged"):
        speed += " ⚑"
    return [
        cell(winner),
        cell(w["winner_ms"]),
        cell(w["baseline"]),
        cell(w["baseline_ms"]),
        cell(w["speedup"], text=speed),
        cell(w["rel_err"], digits=2),
        cell(w["rejected"] or ""),
    ]


def winner_summary(winners: pd.DataFrame, labels: Mapping[str, str]) -> dict:
    """One row per run × dtype × device × direction: how many cases each backend wins, the
    geometric-mean speedup of the winners over the baseline, and how many cases no backend
    answered within tolerance — what a large sweep's winner map says, in a few lines. A case
    whose winner runs the baseline's kernel (``same_kernel``) counts as no win, at 1×."""
    columns = (["run"] if labels else []) + ["dtype", "device", "direction", "cases"]
    columns += ["wins (cases)", "geomean speedup of the winners", "none within tolerance"]
    rows = []
    keys = ["run_id", "dtype", "device", "direction"]
    if "same_kernel" in winners:
        same = winners["same_kernel"].notna()
        winners = winners.assign(
            winner=winners["winner"].where(~same, "same kernel as baseline"),
            speedup=winners["speedup"].where(~same, 1.0),
        )
    for key, group in winners.groupby(keys, sort=False):
        wins = group["winner"].dropna().value_counts()
        speed = group["speedup"].dropna()
        speed = speed[speed > 0]
        geo = math.exp(float(pd.Series(speed).map(math.log).mean())) if len(speed) else None
        row = [cell(labels[key[0]])] if labels else []
        row += [cell(key[1]), cell(key[2]), cell(key[3]), cell(len(group))]
        row += [
            cell(" · ".join(f"{name} {n}" for name, n in wins.items()) or "—"),
            cell(geo, text=format_ratio(geo) if geo else "—"),
            cell(int(group["winner"].isna().sum())),
        ]
        rows.append(row)
    return {"columns": columns, "rows": rows}


#: (header, column in the results frame or None for a computed one, shown only with "all
#: columns"). The first five stay in view when the table scrolls sideways.
#: The reasons of results ``unsupported`` because this host lacks their device (not because
#: a backend refused the problem): the report folds these rows away.
ABSENT_DEVICE_REASONS = ("no CUDA device",)


def absent_device(row: Mapping) -> str | None:
    """The reason a result row is ``unsupported`` when its device is absent from the host
    that ran it (`ABSENT_DEVICE_REASONS`), else None."""
    reason = row.get("reason")
    if row.get("status") != "unsupported" or missing(reason):
        return None
    return str(reason) if str(reason).strip() in ABSENT_DEVICE_REASONS else None


def absent_summary(rows: list[dict]) -> str:
    """``'36 rows unsupported on this host (no CUDA device)'`` for the results table's rows
    that `absent_device` folds away; '' when there are none."""
    reasons = pd.Series([r["absent"] for r in rows if r["absent"]], dtype=object)
    if reasons.empty:
        return ""
    counts = reasons.value_counts()
    why = ", ".join(str(r) if len(counts) == 1 else f"{r}: {n}" for r, n in counts.items())
    noun = "row" if len(reasons) == 1 else "rows"
    return f"{len(reasons)} {noun} unsupported on this host ({why})"


def results_table(
    df: pd.DataFrame,
    peaks: Mapping[str, Mapping],
    tolerances: Mapping[str, float],
    labels: Mapping[str, str],
    mem_unit: tuple[str, int] = ("MiB", 2**20),
) -> dict:
    """Every result row with units in the headers (peak memory in ``mem_unit``: name,
    bytes); ``rows[i]["status"]`` drives the filter, ``rows[i]["flagged"]`` marks a result
    measured disturbed, ``rows[i]["absent"]`` one unsupported for want of its device
    (`absent_device`), folded away with ``absent`` as its line; ``details[j]`` says whether
    column j shows only with "all columns"."""
    unit, scale = mem_unit
    shown = columns.SHOWN
    names = [f"{c.label} [{unit}]" if c.name == "peak_mem_bytes" else c.header for c in shown]
    names = (["run"] if labels else []) + names
    details = ([False] if labels else []) + [c.display == "detail" for c in shown]
    rows = []
    for r in df.to_dict("records"):
        cells = [cell(labels[r["run_id"]])] if labels else []
        context = {"peak": (peaks.get(r["run_id"]) or {}).get(f"{r['device']}/{r['dtype']}")}
        context.update(scale=scale, tolerance=tolerances.get(r["dtype"], math.inf))
        cells += [_result_cell(c, r, context) for c in shown]
        for c, detail in zip(cells, details, strict=True):
            if detail:
                c["cls"] = f"{c['cls'] or ''} detail".strip()
        row = {"status": r["status"], "flagged": is_flagged(r), "absent": absent_device(r)}
        rows.append(row | {"cells": cells})
    return {"columns": names, "details": details, "rows": rows, "absent": absent_summary(rows)}


#: Text columns whose cells get their own CSS class (wrapped, muted) in the report.
_TEXT_CLASSES = ("reason", "beside", "cuda_timing", "timing_note")


def _result_cell(column, r: Mapping, context: Mapping) -> dict:
    """One cell of the results table: a stored column as stored (integers as integers), or a
    computed one (`convbench.store.columns`: ``stored=False``) from the stored ones."""
    name = column.name
    if name == "ci95_ms":
        low, high = r.get("ci_low_ms"), r.get("ci_high_ms")
        return cell(low, text="—" if missing(low) else f"{fmt(low)} – {fmt(high)}")
    if name == "pct_of_peak":
        gflops, peak = r.get("gflops"), context["peak"]
        return cell(100 * gflops / peak if peak and not missing(gflops) else None, digits=3)
    if name == "peak_mem_bytes":
        mem = r.get(name)
        return cell(None if missing(mem) else mem / context["scale"], digits=column.digits)
    if name == "within_tol":
        err = r.get("rel_err")
        return cell(None if missing(err) else bool(err <= context["tolerance"]))
    value = r.get(column.in_frame)
    if column.sql_type == "INTEGER" and not missing(value):
        value = int(value)
    if name == "status":
        return {**cell(value), "cls": "status"}
    if name in _TEXT_CLASSES:
        return cell("" if missing(value) else value, cls=name)
    return cell(value, digits=column.digits)


def comparison_table(
    cmp: pd.DataFrame, old: str = "first", new: str = "this"
) -> tuple[list[str], list[list[dict]]]:
    """Two-run comparison rows (`convbench.analysis.compare.compare_runs`), the largest
    slow-downs first, unmatched results last; ``old`` and ``new`` name the two runs (the
    report's "first" and "this", `convbench compare`'s A and B)."""
    columns = ["case", "backend", "dtype", "device", "direction", old, new]
    columns += [f"{new}/{old} time", "95% CI", "p", "verdict"]
    order = cmp.assign(_missing=cmp["verdict"] == "missing").sort_values(
        ["_missing", "ratio"], ascending=[True, False], kind="stable"
    )
    rows = []
    for r in order.to_dict("records"):
        ci = "—" if missing(r["ci_low"]) else f"{fmt(r['ci_low'], 3)}–{fmt(r['ci_high'], 3)}"
        verdict = r["verdict"]
        if verdict == "missing":
            verdict = format_unmatched(r["status_old"], r["status_new"], old, new)
        rows.append(
            [
                *(cell(r[k]) for k in ("case", "backend", "dtype", "device", "direction")),
                cell(r["old_ms"], text=format_time(r["old_ms"])),
                cell(r["new_ms"], text=format_time(r["new_ms"])),
                cell(r["ratio"], text=format_ratio(r["ratio"], r["significant"])),
                cell(r["ci_low"], text=ci),
                cell(r["p_value"], digits=2),
                cell(verdict, cls=f"verdict-{r['verdict']}"),
            ]
        )
    return columns, rows


def model_table(totals: pd.DataFrame) -> tuple[list[str], list[list[dict]]]:
    """Whole-model rows (`convbench.analysis.modeltime.model_totals`): per group and backend the
    model's convolution time (Σ count × median), the best per-layer mix and its speedup."""
    keys = [k for k in ("run_id", "device", "dtype", "direction", "layout", "batch") if k in totals]
    columns = [
        *keys,
        "backend",
        "layers",
        "model conv time [ms]",
        "best mix [ms]",
        "mix speedup",
        "missing cases",
    ]
    rows = []
    for r in totals.to_dict("records"):
        total = r["total_ms"]
        rows.append(
            [cell(r[k]) for k in keys]
            + [
                cell(r["backend"]),
                cell(r["n_layers"]),
                cell(total),
                cell(r["mix_ms"]),
                cell(
                    r["mix_speedup"],
                    text="—" if missing(r["mix_speedup"]) else f"{r['mix_speedup']:.3g}×",
                ),
                cell(r["missing"] or ""),
            ]
        )
    return columns, rows


E2E_COLUMNS = ["mode", "variant", "original [ms]", "optimized [ms]", "speedup [95% CI]", "p"]
E2E_COLUMNS += ["max rel. output diff", "samples", "compile [s]", "vs torch.compile [95% CI]"]
DECISION_COLUMNS = ["layers", "pass", "problem", "backend", "torch [ms]", "chosen [ms]"]
DECISION_COLUMNS += ["speedup [95% CI]", "saved [ms]", "rel. error", "why"]


def end_to_end_rows(records: list[Mapping]) -> list[list[dict]]:
    """The end-to-end comparisons of a tune as stored (`convbench.flows.variants`), one row
    each under `E2E_COLUMNS`: the report's table and `convbench tune`'s."""
    rows = []
    for r in records:
        variant = variant_text(r) + (" (flagged)" if r.get("flags") else "")
        speed = f"{r['speedup']:.3f}× [{r['ci_low']:.3f}–{r['ci_high']:.3f}]"
        rows.append(
            [
                cell(r["mode"]),
                cell(variant, cls="" if r.get("chosen", True) else "reason"),
                cell(r["original_ms"]),
                cell(r["optimized_ms"]),
                cell(r["speedup"], text=speed),
                cell(r["p_value"], digits=2),
                cell(r["max_rel_diff"], digits=2),
                cell(r["n_samples"]),
                cell(r.get("compile_s"), text=_seconds(r.get("compile_s"))),
                _vs_cell(r.get("vs_compiled")),
            ]
        )
    return rows


def decision_rows(entries: list[Mapping]) -> list[list[dict]]:
    """The decisions of a tune, one row per problem and pass under `DECISION_COLUMNS`,
    largest saving (torch's time minus the chosen one, times the layers) first."""
    rows = []
    for e in entries:
        saved = None
        if e.get("torch_ms") is not None and e.get("median_ms") is not None:
            saved = (e["torch_ms"] - e["median_ms"]) * max(1, len(e.get("layers") or [1]))
        backend = e["backend"]
        if e.get("reverted_from"):
            backend += f" (reverted from {e['reverted_from']})"
        ci = e.get("speedup_ci")
        speed = f"{e.get('speedup', 1.0):.2f}×" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else "")
        row = [
            cell(", ".join(e.get("layers") or []) or e.get("case")),
            cell(e["pass"]),
            cell(_problem_text(e.get("shape") or {})),
            cell(backend),
            cell(e.get("torch_ms")),
            cell(e.get("median_ms")),
            cell(e.get("speedup"), text=speed),
            cell(saved),
            cell(e.get("rel_err"), digits=2),
            cell(e.get("reason") or "", cls="reason"),
        ]
        rows.append((-(saved or 0.0), row))
    rows.sort(key=lambda r: r[0])
    return [row for _, row in rows]


def tune_tables(record: Mapping) -> dict:
    """A `convbench tune` record (`Store.tunes`): the end-to-end rows and the per-layer
    decisions, largest saving first."""
    return {
        "model": record["model"],
        "shape": "×".join(map(str, record["input_shape"])),
        "path": record.get("decisions_path") or "—",
        "end_to_end": {"columns": E2E_COLUMNS, "rows": end_to_end_rows(record["end_to_end"])},
        "layers": {"columns": DECISION_COLUMNS, "rows": decision_rows(record["decisions"])},
    }


def _seconds(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def _vs_cell(vs) -> dict:
    """A variant against torch.compile of the original: ratio [95% interval]."""
    if not vs:
        return cell(None)
    return cell(vs[0], text="{:.3f}× [{:.3f}–{:.3f}]".format(*vs))


def variant_text(record: Mapping) -> str:
    """An end-to-end record's variant (`convbench.flows.tune`), marked where it is the one the
    model keeps — or the one whose decisions the model-level guard sent back to torch, being
    slower than the original; records from before the variants are the tuned model, kept."""
    mark = ""
    if record.get("reverted"):
        mark = " (slower: reverted to torch)"
    elif record.get("chosen", True):
        mark = " (kept)"
    return record.get("variant", "tuned") + mark


def _problem_text(fields: Mapping) -> str:
    if not fields:
        return ""
    kernel = "×".join(map(str, fields["kernel"]))
    spatial = "×".join(map(str, fields["spatial"]))
    text = f"{fields['in_channels']}→{fields['out_channels']} {kernel} on {spatial}"
    if max(fields["stride"]) > 1:
        text += f", stride {fields['stride'][0]}"
    if fields["groups"] > 1:
        text += f", groups {fields['groups']}"
    return text + f", batch {fields['batch']}"
