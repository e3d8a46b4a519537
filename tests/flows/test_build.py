"""The variants `convbench tune` times end to end (`convbench.flows.build`): the compiled ones
with their compile time, the folded one at inference alone, the kept variant's record as
`convbench.optimize` applies it, and the compiled ones skipped where Inductor cannot run."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from convbench.flows import build, variants
from convbench.flows.build import COMPILED, FOLDED, PLANNED, PLANNED_COMPILED, TUNED, TUNED_COMPILED
from convbench.measure.clocks import FakeClock
from convbench.measure.config import TimingConfig
from convbench.measure.disturbance import FakeProbe
from convbench.measure.endtoend import EndToEnd, compare_variants
from convbench.measure.pace import FakePace
from convbench.nn import optimize
from convbench.store.decisions import DecisionTable

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
FAST = TimingConfig(warmup_s=0, min_samples=5, max_samples=8, max_time_s=0.02)


def conv_bn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2)
    return model


def run(table: DecisionTable, compare, modes=("inference",)) -> tuple:
    said: list[str] = []
    e2e, layout, every, records = variants.end_to_end(
        conv_bn(), table, X, modes, FAST, 0.05, "cpu", said.append, compare=compare
    )
    return table, layout, every, said


def test_the_compiled_variants_are_timed_beside_the_others_with_their_compile_time(im2col_decision):
    """Real compiles (Inductor, a tiny model) on a scripted clock: every variant is timed,
    each compiled one with the seconds its first call took."""
    scripted = functools.partial(
        compare_variants, clock=FakeClock(1_000_000), probe=FakeProbe([0]), pace=FakePace(1000)
    )
    _, layout, every, said = run(im2col_decision(), scripted)
    names = {e.variant for e in every}
    assert {TUNED, FOLDED, COMPILED, TUNED_COMPILED} <= names
    for e in every:
        compiled = e.variant in (COMPILED, TUNED_COMPILED)
        assert (e.compile_s is not None and e.compile_s > 0) == compiled, e
        assert e.max_rel_diff < 1e-5  # folded and compiled alike answer as the original
        assert e.vs_compiled is not None and e.vs_compiled[1] <= e.vs_compiled[0]
    assert layout["variant"] == TUNED and layout["compile"] is None, said  # a tie: the default


def faster(name: str, ms: float = 5.0):
    """A stand-in for `compare_variants`: ``name`` at ``ms``, the rest at 9 ms (the original
    at 10 ms), every sample clean."""

    def compare(original, by_name, x, mode, config):
        out = {}
        for n in by_name:
            t = ms if n == name else 9.0
            samples = tuple(t * (1 + 0.01 * ((i * 7) % 11 - 5) / 5) for i in range(20))
            out[n] = EndToEnd(mode, 10.0, t, 10.0 / t, 0, 0, 1e-6, 0, 20, n, samples)
        return out

    return compare


def test_a_kept_compiled_variant_is_recorded_as_optimize_applies_it(im2col_decision):
    table, layout, every, said = run(im2col_decision(), faster(TUNED_COMPILED))
    assert layout["variant"] == TUNED_COMPILED
    assert layout["compile"] == {"dynamic": False, "options": {"freezing": True}}
    assert layout["folds"] == [["conv1@0", "1"]] and table.entries[0]["backend"] == "im2col"
    kept = DecisionTable("<t>", table.entries, layout=layout)
    model = conv_bn().eval()
    again = optimize(copy.deepcopy(model), kept)  # compile=None: as the file says
    assert again._compiled_call_impl is not None
    with torch.no_grad():
        assert torch.allclose(again(X), model(X), rtol=1e-5, atol=1e-6)


def planned(table: DecisionTable) -> DecisionTable:
    """``table`` with a per-layer plan that computes the model's convolution in
    channels_last with its decision's backend."""
    entry = table.entries[0]
    step = dict(layer="0", problem=entry["problem"], backend=entry["backend"],
                layout="channels_last", arrives="contiguous", convert=True)  # fmt: skip
    plan = {"dtype": "float32", "device": "cpu", "context": entry["context"], "layers": [step]}
    return DecisionTable(table.path, table.entries, table.model, plan=plan)


def test_the_plan_is_compiled_where_it_is_timed(im2col_decision):
    with_plan, without = planned(im2col_decision()), im2col_decision()

    def names(table, compiled):
        return [v.name for v in build.applicable(conv_bn(), table, (), compiled)]

    assert {PLANNED, PLANNED_COMPILED} <= set(names(with_plan, True))
    assert PLANNED_COMPILED not in names(with_plan, False) + names(without, True)


def test_a_kept_compiled_plan_is_recorded_as_optimize_applies_it(im2col_decision):
    table, layout, every, said = run(planned(im2col_decision()), faster(PLANNED_COMPILED))
    assert layout["variant"] == PLANNED_COMPILED and layout["per_layer"], said
    assert layout["compile"] == {"dynamic": False, "options": {"freezing": True}}
    kept = DecisionTable("<t>", table.entries, layout=layout, plan=table.plan)
    model = conv_bn().eval()
    again = optimize(copy.deepcopy(model), kept)
    assert again._compiled_call_impl is not None
    with torch.no_grad():
        assert torch.allclose(again(X), model(X), rtol=1e-5, atol=1e-6)


def test_the_compiled_original_sends_every_decision_back_to_torch(im2col_decision):
    table, layout, _, _ = run(im2col_decision(), faster(COMPILED))
    assert layout["variant"] == COMPILED and layout["folds"] == []
    assert table.entries[0]["backend"] == "torch" and table.entries[0]["reverted_from"] == "im2col"


def test_a_training_tune_times_the_fold_at_inference_alone_and_compiles_without_freezing(
    im2col_decision,
):
    table, layout, every, _ = run(
        im2col_decision(), faster(TUNED_COMPILED), modes=("inference", "train")
    )
    timed = {(e.mode, e.variant) for e in every}
    assert ("inference", FOLDED) in timed and ("train", FOLDED) not in timed
    assert layout["variant"] == TUNED_COMPILED and layout["compile"] == {"dynamic": False}


def test_every_variant_is_set_against_the_compiled_original(im2col_decision):
    _, _, every, _ = run(
        im2col_decision(), faster(TUNED_COMPILED)
    )  # compiled tuned at 5 ms, the others at 9
    vs = {e.variant: e.vs_compiled for e in every}
    assert vs[COMPILED][0] == 1.0 and 1.7 < vs[TUNED_COMPILED][0] < 1.9
    assert vs[TUNED][0] == 1.0


def test_without_inductor_the_compiled_variants_are_skipped_with_one_line(
    monkeypatch, im2col_decision
):
    monkeypatch.setattr(build, "inductor_unavailable", lambda device: "no C++ compiler (g++)")
    _, layout, every, said = run(im2col_decision(), faster(TUNED))
    assert "compiled variants skipped: no C++ compiler (g++)" in said
    assert not {COMPILED, TUNED_COMPILED} & {e.variant for e in every}
    assert all(e.vs_compiled is None for e in every)


def two_convs() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    )  # fmt: skip
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_var.uniform_(0.5, 2)
    return model


def two_backend_plan(table: DecisionTable) -> DecisionTable:
    """``table`` (`im2col_decision`) with a plan that runs the first convolution of
    `two_convs` on im2col and the second on winograd, both in channels_last."""
    from convbench.problem.spec import ConvProblem

    second = ConvProblem(batch=2, in_channels=4, out_channels=4, spatial=(8, 8), kernel=(3, 3),
                         padding=(1, 1))  # fmt: skip
    entry = table.entries[0]
    steps = [
        dict(layer="conv1@0", problem=entry["problem"], backend="im2col", layout="channels_last",
             arrives="contiguous", convert=True),
        dict(layer="conv2@3", problem=second.key, backend="winograd", layout="channels_last",
             arrives="channels_last", convert=False),
    ]  # fmt: skip
    plan = {"dtype": "float32", "device": "cpu", "context": entry["context"], "layers": steps}
    return DecisionTable(table.path, table.entries, table.model, plan=plan)


def test_the_compiled_plan_is_also_timed_without_each_of_its_backends(im2col_decision):
    def names(table, compiled=True):
        return [v.name for v in build.applicable(two_convs(), table, (), compiled)]

    two = two_backend_plan(im2col_decision())
    expected = [build.without(b).name for b in ("im2col", "winograd")]
    assert names(two)[-2:] == expected
    assert not set(expected) & set(names(two, compiled=False))
    one = planned(im2col_decision())  # a plan on one backend: without it, no plan is left
    assert not [n for n in names(one) if "without" in n]
    part = build.restricted(two, "im2col")
    assert [s["backend"] for s in part.plan["layers"]] == ["torch", "winograd"]
    assert [s["backend"] for s in two.plan["layers"]] == ["im2col", "winograd"]  # a copy


def test_a_kept_plan_without_a_backend_is_recorded_as_optimize_applies_it(
    monkeypatch, im2col_decision
):
    """The plan without im2col kept: its im2col layer is back on torch in the plan the
    decisions file holds (saying why), its BatchNorm unfolded, the winograd layer's folded;
    `optimize` then builds the model tune timed. No compile is run (a stand-in times them)."""
    monkeypatch.setattr(build, "first_call_s", lambda model, x, mode: 1.0)
    table = two_backend_plan(im2col_decision())
    kept = build.without("im2col").name
    e2e, layout, every, said = variants.end_to_end(
        two_convs(), table, X, ("inference",), FAST, 0.05, "cpu", [].append,
        compare=faster(kept),
    )  # fmt: skip
    assert layout["variant"] == kept and layout["per_layer"] and layout["compile"]
    assert layout["folds"] == [["conv2@3", "4"]]
    first, second = table.plan["layers"]
    assert first["backend"] == "torch" and first["reverted_from"] == "im2col"
    assert "did not pay compiled" in first["reason"] and second["backend"] == "winograd"
    model = two_convs().eval()
    again = optimize(copy.deepcopy(model), DecisionTable("<t>", table.entries, layout=layout,
                     plan=table.plan), compile=False)  # fmt: skip
    first, second = (again[i]._convbench for i in (0, 3))
    assert set(first.decisions.values()) == {"torch"} and first.bn is None
    assert "winograd" in second.decisions.values() and second.bn is again[4]
    with torch.no_grad():
        assert torch.allclose(again(X), model(X), rtol=1e-5, atol=1e-6)


def test_a_plan_folds_only_into_the_layers_it_takes_off_torch(im2col_decision):
    """The first convolution: im2col in the decisions, torch in the plan. A variant of the
    decisions folds its BatchNorm; a plan variant leaves it to PyTorch's own convolution
    and folds the second's, which only the plan takes off torch."""
    table = build.restricted(two_backend_plan(im2col_decision()), "im2col")
    model = two_convs().eval()
    assert [list(p) for p in variants.folds_of(model, table, X)] == [["conv1@0", "1"]]
    planned_folds = variants.folds_of(model, table, X, per_layer=True)
    assert [list(p) for p in planned_folds] == [["conv2@3", "4"]]
