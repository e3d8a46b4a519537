"""The per-layer plan's dynamic programme against brute force, on hand-made cost tables."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from convbench.analysis.layout_plan import Layer, Option, plan_chain, plan_cost

LAYOUTS = ("contiguous", "channels_last")
CONVERT = {("contiguous", "channels_last"): 1.0, ("channels_last", "contiguous"): 1.0}


def brute_force(layers, start="contiguous"):
    return min(
        plan_cost(layers, choice, start)
        for choice in itertools.product(*(layer.options for layer in layers))
    )


def random_chain(rng: random.Random, n: int) -> list[Layer]:
    layers = []
    for i in range(n):
        options = tuple(
            Option(backend, layout, rng.uniform(0.5, 5.0), rng.choice(LAYOUTS + ("strided",)))
            for backend in ("torch", "winograd", "im2col")[: rng.randint(1, 3)]
            for layout in LAYOUTS
        )
        convert = {pair: rng.uniform(0.0, 3.0) for pair in itertools.permutations(LAYOUTS, 2)}
        convert.update({("strided", layout): rng.uniform(0.0, 3.0) for layout in LAYOUTS})
        arrives = rng.choice([None, None, None, *LAYOUTS])
        layers.append(Layer(f"l{i}", options, arrives, convert))
    return layers


@pytest.mark.parametrize("seed", range(60))
def test_optimal_against_brute_force(seed):
    rng = random.Random(seed)
    layers = random_chain(rng, rng.randint(1, 6))
    start = rng.choice(LAYOUTS)
    plan = plan_chain(layers, start)
    assert plan.total_ms == pytest.approx(brute_force(layers, start))
    # the plan's own steps price to its total, and each step names an option of its layer
    chosen = [
        next(o for o in layer.options if (o.backend, o.layout) == (s.backend, s.layout))
        for layer, s in zip(layers, plan.steps, strict=True)
    ]
    assert plan_cost(layers, chosen, start) == pytest.approx(plan.total_ms)


def test_switches_only_where_the_gain_pays_for_the_conversions():
    fast_cl = (Option("torch", "contiguous", 5.0, "contiguous"),
               Option("torch", "channels_last", 3.5, "channels_last"))  # fmt: skip
    slow_cl = (Option("torch", "contiguous", 5.0, "contiguous"),
               Option("torch", "channels_last", 6.0, "channels_last"))  # fmt: skip
    # one layer gains 1.5 ms in channels_last, but going there costs 1 and back 1: it stays
    layers = [Layer("a", slow_cl, None, CONVERT), Layer("b", fast_cl, None, CONVERT),
              Layer("c", slow_cl, None, CONVERT)]  # fmt: skip
    plan = plan_chain(layers)
    assert [s.layout for s in plan.steps] == ["contiguous"] * 3
    assert plan.convert_ms == 0
    # three such layers in a row gain 4.5 for 2 of conversions: they switch, once each way
    layers = (
        [Layer("a", slow_cl, None, CONVERT)]
        + [Layer(n, fast_cl, None, CONVERT) for n in "bcd"]
        + [Layer("e", slow_cl, None, CONVERT)]
    )
    plan = plan_chain(layers)
    assert [s.layout for s in plan.steps] == ["contiguous"] + ["channels_last"] * 3 + ["contiguous"]
    assert [s.converts for s in plan.steps] == [False, True, False, False, True]
    assert plan.total_ms == pytest.approx(5 + 3 * 3.5 + 5 + 2.0)


def test_an_imposed_layout_is_where_the_input_arrives():
    """ConvNeXt's case: the ops before a layer hand it channels-last strides, whatever the
    layer before produced; computing there needs no conversion."""
    options = (Option("torch", "contiguous", 2.0, "contiguous"),
               Option("torch", "channels_last", 2.2, "channels_last"))  # fmt: skip
    layers = [Layer("a", options, None, CONVERT), Layer("b", options, "channels_last", CONVERT)]
    plan = plan_chain(layers)
    assert [s.layout for s in plan.steps] == ["contiguous", "channels_last"]
    assert plan.steps[1].arrives == "channels_last" and not plan.steps[1].converts


def test_an_unmeasured_conversion_is_never_planned():
    options = (Option("torch", "contiguous", 9.0, "contiguous"),
               Option("fast", "channels_last", 1.0, "channels_last"))  # fmt: skip
    plan = plan_chain([Layer("a", options, None, {})])
    assert plan.steps[0].layout == "contiguous"
    assert math.isinf(plan_cost([Layer("a", options, None, {})], [options[1]]))


def test_a_layer_without_options_is_named():
    with pytest.raises(ValueError, match="layer 'x': no option"):
        plan_chain([Layer("x", ())])
