"""What the report answers first: per case, which backend to use, how much faster it is than
the baseline and whether that can be trusted; and how many results were flagged, with what to
do about it. Pure: the winner map (`convbench.analysis.winners.winner_map`) and the results
frame in, plain data out.

A speedup is trusted only when neither the winner's nor the baseline's result was flagged
(`convbench.analysis.flags`: samples that lost CPU time, an unsteady median, or a host off
its usual pace; the result's reason names which) and the difference is significant. Where the
winner and the baseline dispatch to the same kernel family (the ``dispatch`` column: ``torch``
on a CPU runs ``Mkldnn``, which is what ``onednn`` runs), neither is crowned: they are one
kernel measured twice.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from convbench.analysis import flags
from convbench.analysis.compare import KEYS, ok_results
from convbench.analysis.flags import is_flagged
from convbench.report.format import format_ratio, missing

#: The columns that name one result within a set of runs.
RESULT_KEY = ("run_id", *KEYS, "backend")


def flag_kinds(row: Mapping) -> list[str]:
    """The flags of a result row (`convbench.analysis.flags.kinds` of its reason:
    ``['disturbed', 'off pace']``); ``['flagged']`` for a flagged row whose reason names none;
    [] for a row that was not flagged."""
    if not is_flagged(row):
        return []
    reason = row.get("reason")
    return flags.kinds(None if missing(reason) else str(reason)) or ["flagged"]


def _results_by_key(df: pd.DataFrame) -> dict[tuple, dict]:
    return {tuple(r[k] for k in RESULT_KEY): r for r in ok_results(df).to_dict("records")}


def with_flags(winners: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The winner map with ``flags`` (``{backend: [flag kinds]}`` of the winner's and the
    baseline's results, flagged ones only) per row."""
    results = _results_by_key(df)
    found = []
    for w in winners.to_dict("records"):
        key = tuple(w[k] for k in RESULT_KEY[:-1])
        win = None if missing(w["winner"]) else results.get((*key, w["winner"]))
        rows = [r for r in (win, results.get((*key, w["baseline"]))) if r is not None]
        found.append({r["backend"]: flag_kinds(r) for r in rows if flag_kinds(r)})
    return winners.assign(flags=found)


def _answer(w: Mapping) -> tuple[str, bool | None, list[str]]:
    """(what to use, whether the evidence can be trusted or None where there is no claim,
    why not) for one row of `with_flags`."""
    winner, base, kernel = w["winner"], w["baseline"], w["same_kernel"]
    why = _flag_reasons(w["flags"])
    if missing(winner):
        return "no backend answered within the dtype's tolerance", None, []
    if not missing(kernel):
        text = f"same kernel as baseline ({kernel}): {winner} and {base} run it, "
        return text + "no winner between them", not why, why
    if winner == base:
        return f"keep the baseline {base}: nothing measured is faster", not why, why
    speedup = w["speedup"]
    if missing(speedup):
        return f"use {winner}; the baseline {base} was not measured", False, [*why, "no baseline"]
    if speedup >= 1:
        ratio = f"{format_ratio(speedup)} faster than"
    else:  # the baseline answered out of tolerance, faster
        ratio = f"{format_ratio(1 / speedup)} slower than"
    if not w["significant"]:
        p = w.get("p_value")
        why.append("difference not significant" + ("" if missing(p) else f" (p = {p:.2g})"))
    return f"use {winner}, {ratio} the baseline ({base})", not why, why


def _flag_reasons(flags: Mapping[str, list[str]]) -> list[str]:
    """``{'torch': ['unsteady'], 'onednn': ['unsteady', 'off-pace']}`` ->
    ``['unsteady: torch, onednn', 'off-pace: onednn']``."""
    by_kind: dict[str, list[str]] = {}
    for backend, kinds in flags.items():
        for kind in kinds:
            by_kind.setdefault(kind, []).append(backend)
    return [f"{kind}: {', '.join(backends)}" for kind, backends in by_kind.items()]


def case_summaries(annotated: pd.DataFrame, labels: Mapping[str, str]) -> list[dict]:
    """One line per run × case × direction × dtype × device of `with_flags`, in its order:
    ``{"where": 'conv1 · forward · float32 · cpu', "answer": 'use winograd, 2.1× faster than
    the baseline (onednn)', "trust": 'yes' | 'no' | '—', "why": 'off-pace: winograd'}``."""
    lines = []
    for w in annotated.to_dict("records"):
        keys = ("case", "direction", "dtype", "device", "layout")
        where = " · ".join(str(w[k]) for k in keys if k in w and w[k] != "contiguous")
        if labels:
            where = f"run {labels[w['run_id']]} · {where}"
        answer, trusted, why = _answer(w)
        trust = "—" if trusted is None else ("yes" if trusted else "no")
        lines.append({"where": where, "answer": answer, "trust": trust, "why": "; ".join(why)})
    return lines


def flag_count(df: pd.DataFrame, run: Mapping) -> dict:
    """How many of a run's measured results were flagged, by flag (`convbench.analysis.flags
    .count`), and what to do: ``{"flagged": 8, "measured": 9, "text": '8 of 9 results flagged
    (disturbed 2, off pace 8)', "advice": '…'}`` (advice empty when none was)."""
    counted = flags.count(df.to_dict("records"))
    by_kind = ", ".join(f"{kind} {n}" for kind, n in counted.by_kind)
    text = f"{counted.n_flagged} of {counted.n_measured} results flagged"
    advice = ""
    if counted.n_flagged:
        command = run.get("command")
        advice = flags.ADVICE + (f"; this run's command: `{command}`" if command else "")
    return {
        "flagged": counted.n_flagged,
        "measured": counted.n_measured,
        "text": text + (f" ({by_kind})" if by_kind else ""),
        "advice": advice,
    }
