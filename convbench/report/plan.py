"""The report's view of a tune's per-layer plan (`convbench.flows.plan`, kept with the tune in
the store): what it predicts beside what the planned model measured, how much the
convolutions themselves could give, and each layer's backend, layout and times."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from convbench.analysis.layout_plan import PLANNED
from convbench.report.tables import cell

PLAN_COLUMNS = ["layer", "backend", "layout", "input arrives", "conversion [ms]"]
PLAN_COLUMNS += ["apart [ms]", "replayed [ms]"]


def plan_view(tune: Mapping) -> dict | None:
    """A tune record's plan as the report shows it: sentences and a table (`PLAN_COLUMNS`);
    None for a tune without one (training, or a store from before plans were kept)."""
    plan = tune.get("plan")
    if not plan:
        return None
    layers = plan["layers"]
    return {
        "lines": [_choice(plan), _prediction(plan, tune.get("end_to_end") or [])]
        + ([_headroom(plan)] if plan.get("original_ms") else []),
        "columns": PLAN_COLUMNS,
        "rows": [
            [
                cell(s["layer"]),
                cell(s["backend"]),
                cell(s["layout"]),
                cell(s["arrives"], cls="" if not s["convert"] else "reason"),
                cell(s.get("convert_ms") if s["convert"] else None),
                cell(s["ms"]),
                cell(s.get("replay_ms")),
            ]
            for s in layers
        ],
    }


def _choice(plan: Mapping) -> str:
    layers = plan["layers"]
    layouts = Counter(s["layout"] for s in layers)
    backends = Counter(s["backend"] for s in layers)
    return (
        f"{len(layers)} convolutions: "
        + ", ".join(f"{n} in {layout}" for layout, n in layouts.most_common())
        + "; "
        + ", ".join(f"{n} on {backend}" for backend, n in backends.most_common())
        + f"; {sum(s['convert'] for s in layers)} conversion(s), {plan['convert_ms']:.2f} ms."
    )


def _prediction(plan: Mapping, end_to_end: list) -> str:
    text = (
        f"Predicted convolution time {plan['predicted_ms']:.2f} ms (the planned layers "
        f"replayed in execution order; {plan['conv_ms'] + plan['convert_ms']:.2f} ms measured "
        "apart, back to back)"
    )
    timed = [r for r in end_to_end if r.get("variant") == PLANNED and r["mode"] == "inference"]
    if timed:
        text += (
            f"; the planned model measured {timed[0]['optimized_ms']:.2f} ms end to end, the "
            "other ops around the convolutions"
        )
    return text + "."


def _headroom(plan: Mapping) -> str:
    saved = plan["original_ms"] - plan["floor_ms"]
    return (
        f"The original's convolutions take {plan['original_ms']:.2f} ms measured apart, each "
        f"one's fastest option {plan['floor_ms']:.2f} ms: {saved:.2f} ms is what choosing "
        "algorithms and layouts per layer can save on the convolutions themselves."
    )
