"""The per-layer plan applied by `convbench.optimize`: each planned layer computes in the
plan's layout with the plan's backend, and converts its input exactly where the plan says."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import convbench.nn.layers as layers
from convbench import optimize
from convbench.measure.envinfo import decision_context
from convbench.problem.layout import layout_of
from convbench.problem.trace import describe_call, layer_names
from convbench.store.decisions import DecisionTable, parse

X = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def chain() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
        nn.Conv2d(8, 16, 1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
    ).eval()  # fmt: skip


def plan_for(model, layouts: list[str], backends: list[str]) -> DecisionTable:
    """A decisions table whose per-layer plan computes the model's convolutions (in order)
    in ``layouts`` with ``backends``; the entries keep every pass on torch."""
    names = layer_names(model)
    calls = []

    def hook(module, args):
        calls.append(describe_call(names[module], module, tuple(args[0].shape)))

    handles = [m.register_forward_pre_hook(hook) for m in names]
    with torch.no_grad():
        model(X)
    for h in handles:
        h.remove()
    context = decision_context("cpu")
    entries = [dict(problem=c.problem.key, dtype="float32", device="cpu", backend="torch",
                    context=context, **{"pass": "forward"}) for c in calls]  # fmt: skip
    steps, arrives = [], "contiguous"
    for call, layout, backend in zip(calls, layouts, backends, strict=True):
        steps.append(dict(layer=call.path, problem=call.problem.key, backend=backend,
                          layout=layout, arrives=arrives, convert=arrives != layout))  # fmt: skip
        arrives = layout
    document = {
        "format": "convbench-decisions/1", "decisions": entries,
        "layout": {"memory_format": "contiguous", "device": "cpu", "context": context,
                   "per_layer": True},
        "plan": {"dtype": "float32", "device": "cpu", "context": context, "layers": steps},
    }  # fmt: skip
    return parse(document, "<plan>")


@pytest.fixture
def conversions(monkeypatch):
    """The layers whose input the tuned layer actually converted (its layout changed)."""
    seen: list[tuple[str, str, str]] = []
    real = layers.to_layout

    def spy(t, layout):
        if layout_of(t) != layout:
            seen.append((layout_of(t), layout))
        return real(t, layout)

    monkeypatch.setattr(layers, "to_layout", spy)
    return seen


LAYOUTS = ["contiguous", "channels_last", "channels_last", "contiguous"]


def test_conversions_exactly_where_the_plan_switches(conversions):
    model = chain()
    table = plan_for(model, LAYOUTS, ["torch", "winograd", "im2col", "torch"])
    tuned = optimize(copy.deepcopy(model), table)
    seen_layouts = {}
    for module in layer_names(tuned):
        module.register_forward_hook(lambda m, a, out: seen_layouts.__setitem__(m, layout_of(out)))
    with torch.no_grad():
        got = tuned(X)
    assert torch.allclose(got, model(X), rtol=1e-4, atol=1e-5)
    # the second layer converts to channels_last, the fourth back; no other conversion
    assert conversions == [("contiguous", "channels_last"), ("channels_last", "contiguous")]
    convs = list(layer_names(tuned))
    assert [seen_layouts[m] for m in convs] == LAYOUTS  # each computes (and returns) there
    assert [m._convbench.layout for m in convs] == LAYOUTS
    routes = [next(iter(m._convbench.routes.values()))[0] for m in convs]
    assert routes == ["torch", "winograd", "im2col", "torch"]
    assert convs[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert set(tuned.state_dict()) == set(model.state_dict())


def test_the_plan_applies_only_where_the_kept_variant_is_the_plan(conversions):
    model = chain()
    table = plan_for(model, LAYOUTS, ["torch", "winograd", "im2col", "torch"])
    table.layout["per_layer"] = False
    tuned = optimize(copy.deepcopy(model), table)
    with torch.no_grad():
        tuned(X)
    assert conversions == []
    assert all(m._convbench.layout is None for m in layer_names(tuned))


def test_the_planned_model_compiles_without_a_graph_break():
    model = chain()
    table = plan_for(model, LAYOUTS, ["torch", "winograd", "im2col", "torch"])
    tuned = optimize(copy.deepcopy(model), table, compile=False)
    torch._dynamo.reset()
    compiled = torch.compile(tuned, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(X), model(X), rtol=1e-4, atol=1e-5)


def test_an_unknown_backend_in_the_plan_is_a_one_line_error():
    from convbench.errors import UserError
    from convbench.nn import load_decisions

    table = plan_for(chain(), LAYOUTS, ["torch", "nosuch", "im2col", "torch"])
    with pytest.raises(UserError, match=r"<plan>: plan: layer #2: field 'backend': unknown"):
        load_decisions(table)


def replayed_table(model):
    table = plan_for(model, LAYOUTS, ["torch", "winograd", "im2col", "torch"])
    table.plan.update(conv_ms=4.0, convert_ms=0.5, plan_ms=4.5, predicted_ms=4.5)
    return table


def test_the_replay_runs_each_planned_call_once_a_round_in_order_as_it_arrives():
    from convbench.flows import replay
    from convbench.flows.replay import MIN_ROUNDS, arriving

    model = chain()
    table = replayed_table(model)
    order, seen = [], []
    real = layers._TunedConv._conv_forward

    def spy(self, input, weight, bias):
        order.append(self._convbench.name)
        seen.append(layout_of(input))
        return real(self, input, weight, bias)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(layers._TunedConv, "_conv_forward", spy)
        mp.setattr(replay, "REPLAY_S", 0.0)
        line = replay.replay_plan(model, table, X)
    names = [s["layer"] for s in table.plan["layers"]]
    # one forward to record the arrivals, an untimed round, then the rounds
    assert order == names * (2 + MIN_ROUNDS)
    # under the plan the third call's input arrives channels_last (the second's output), and
    # the replay hands it those strides, as the model does
    assert seen[-4:] == ["contiguous", "contiguous", "channels_last", "channels_last"]
    plan = table.plan
    assert all(s["replay_ms"] > 0 for s in plan["layers"])
    assert plan["predicted_ms"] == pytest.approx(sum(s["replay_ms"] for s in plan["layers"]))
    assert plan["plan_ms"] == 4.5 and "replayed in execution order" in line
    assert plan["replay_pace_us"] > 0  # the host's pace over the rounds, for later figures
    tuned = optimize(copy.deepcopy(model), table)
    strides = [stride for *_, stride in arriving(tuned, X)]
    assert strides[2] == torch.empty(2, 8, 12, 12).to(memory_format=torch.channels_last).stride()


def test_a_plan_in_another_order_than_the_model_calls_is_not_replayed():
    from convbench.flows.replay import replay_plan

    table = replayed_table(chain())
    table.plan["layers"].reverse()
    line = replay_plan(chain(), table, X)
    assert "not replayed" in line and table.plan["predicted_ms"] == 4.5
    assert not any("replay_ms" in s for s in table.plan["layers"])
