"""The report's view of a tune's per-layer plan (`convbench.report.plan`)."""

from __future__ import annotations

from convbench.analysis.layout_plan import PLANNED
from convbench.report.plan import PLAN_COLUMNS, plan_view

STEPS = [
    dict(layer="conv1", backend="torch", layout="channels_last", arrives="contiguous",
         convert=True, ms=2.0, convert_ms=0.5, replay_ms=2.75),
    dict(layer="layer1.conv1", backend="winograd", layout="channels_last",
         arrives="channels_last", convert=False, ms=3.0, convert_ms=0.0, replay_ms=3.25),
]  # fmt: skip
PLAN = dict(layers=STEPS, conv_ms=5.0, convert_ms=0.5, join_ms=0.0, plan_ms=5.5,
            predicted_ms=6.0, original_ms=9.0, floor_ms=5.0)  # fmt: skip


def test_the_plan_is_shown_with_its_prediction_beside_the_planned_model():
    e2e = [
        dict(mode="inference", variant="tuned", optimized_ms=20.0),
        dict(mode="inference", variant=PLANNED, optimized_ms=17.5),
    ]
    view = plan_view(dict(plan=PLAN, end_to_end=e2e))
    choice, prediction, headroom = view["lines"]
    assert choice == (
        "2 convolutions: 2 in channels_last; 1 on torch, 1 on winograd; 1 conversion(s), 0.50 ms."
    )
    assert prediction.startswith("Predicted convolution time 6.00 ms")
    assert "5.50 ms measured apart" in prediction and "measured 17.50 ms end to end" in prediction
    assert "9.00 ms measured apart" in headroom and "4.00 ms is what" in headroom
    assert view["columns"] == PLAN_COLUMNS
    first = [c["text"] for c in view["rows"][0]]
    assert first[:4] == ["conv1", "torch", "channels_last", "contiguous"]
    assert view["rows"][1][4]["text"] == "—"  # no conversion there


def test_a_tune_without_a_plan_shows_none():
    assert plan_view(dict(plan=None, end_to_end=[])) is None
    assert plan_view(dict(end_to_end=[])) is None
