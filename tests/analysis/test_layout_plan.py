"""The per-layer plan's dynamic programme against brute force, on hand-made cost tables."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from convbench.analysis.layout_plan import MAX_LIVE, Join, Layer, Option, plan_cost, plan_layers

LAYOUTS = ("contiguous", "channels_last")
CONVERT = {("contiguous", "channels_last"): 1.0, ("channels_last", "contiguous"): 1.0}


def brute_force(layers, start="contiguous", joins=()):
    return min(
        plan_cost(layers, choice, start, joins)
        for choice in itertools.product(*(layer.options for layer in layers))
    )


def random_joins(rng: random.Random, n: int) -> list[Join]:
    """Residual sums between random layers, or a layer and an imposed layout."""
    ends = list(range(n)) + list(LAYOUTS)
    convert = {
        pair: rng.uniform(0.0, 3.0) for pair in itertools.permutations(LAYOUTS + ("strided",), 2)
    }
    return [Join(rng.choice(ends), rng.choice(ends), convert) for _ in range(rng.randint(0, 3))]


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
        source = rng.choice([None, rng.randrange(i)]) if i else None  # a residual stream's
        layers.append(Layer(f"l{i}", options, arrives, convert, source))
    return layers


@pytest.mark.parametrize("seed", range(100))
def test_optimal_against_brute_force(seed):
    rng = random.Random(seed)
    layers = random_chain(rng, rng.randint(1, 6))
    start = rng.choice(LAYOUTS)
    joins = random_joins(rng, len(layers)) if seed % 2 else []
    plan = plan_layers(layers, start, joins)
    assert plan.total_ms == pytest.approx(brute_force(layers, start, joins))
    # the plan's own steps price to its total, and each step names an option of its layer
    chosen = [
        next(o for o in layer.options if (o.backend, o.layout) == (s.backend, s.layout))
        for layer, s in zip(layers, plan.steps, strict=True)
    ]
    assert plan_cost(layers, chosen, start, joins) == pytest.approx(plan.total_ms)
    assert plan.join_ms == pytest.approx(plan.total_ms - plan.conv_ms - plan.convert_ms)


def test_switches_only_where_the_gain_pays_for_the_conversions():
    fast_cl = (Option("torch", "contiguous", 5.0, "contiguous"),
               Option("torch", "channels_last", 3.5, "channels_last"))  # fmt: skip
    slow_cl = (Option("torch", "contiguous", 5.0, "contiguous"),
               Option("torch", "channels_last", 6.0, "channels_last"))  # fmt: skip
    # one layer gains 1.5 ms in channels_last, but going there costs 1 and back 1: it stays
    layers = [Layer("a", slow_cl, None, CONVERT), Layer("b", fast_cl, None, CONVERT),
              Layer("c", slow_cl, None, CONVERT)]  # fmt: skip
    plan = plan_layers(layers)
    assert [s.layout for s in plan.steps] == ["contiguous"] * 3
    assert plan.convert_ms == 0
    # three such layers in a row gain 4.5 for 2 of conversions: they switch, once each way
    layers = (
        [Layer("a", slow_cl, None, CONVERT)]
        + [Layer(n, fast_cl, None, CONVERT) for n in "bcd"]
        + [Layer("e", slow_cl, None, CONVERT)]
    )
    plan = plan_layers(layers)
    assert [s.layout for s in plan.steps] == ["contiguous"] + ["channels_last"] * 3 + ["contiguous"]
    assert [s.converts for s in plan.steps] == [False, True, False, False, True]
    assert plan.total_ms == pytest.approx(5 + 3 * 3.5 + 5 + 2.0)


def test_an_imposed_layout_is_where_the_input_arrives():
    """ConvNeXt's case: the ops before a layer hand it channels-last strides, whatever the
    layer before produced; computing there needs no conversion."""
    options = (Option("torch", "contiguous", 2.0, "contiguous"),
               Option("torch", "channels_last", 2.2, "channels_last"))  # fmt: skip
    layers = [Layer("a", options, None, CONVERT), Layer("b", options, "channels_last", CONVERT)]
    plan = plan_layers(layers)
    assert [s.layout for s in plan.steps] == ["contiguous", "channels_last"]
    assert plan.steps[1].arrives == "channels_last" and not plan.steps[1].converts


def test_a_residual_stream_arrives_in_the_layout_of_the_layer_that_began_it():
    """ConvNeXt's later stages: the downsampling convolution begins the stream, and each
    block's depthwise convolution gets the stream (the sum keeps its first term's layout),
    not the output of the depthwise convolution before it."""
    stream = (Option("torch", "contiguous", 5.0, "contiguous"),
              Option("torch", "channels_last", 4.0, "channels_last"))  # fmt: skip
    depthwise = (Option("torch", "contiguous", 1.0, "contiguous"),
                 Option("torch", "channels_last", 1.6, "channels_last"))  # fmt: skip
    layers = [Layer("down", stream, "channels_last", CONVERT)]
    layers += [Layer(f"dw{i}", depthwise, None, CONVERT, 0) for i in range(3)]
    plan = plan_layers(layers)
    # contiguous depthwise layers would each convert from the stream's channels_last: 3 × 2.0
    # against 3 × 1.6 where they stay; taken as a chain, the first conversion looked like all
    assert [s.layout for s in plan.steps] == ["channels_last"] * 4
    assert plan.total_ms == pytest.approx(4.0 + 3 * 1.6)
    chain = plan_layers([Layer(x.name, x.options, x.arrives, x.convert_ms) for x in layers])
    assert [s.layout for s in chain.steps] == ["channels_last"] + ["contiguous"] * 3
    assert plan_cost(layers, [stream[1]] + [depthwise[0]] * 3) == pytest.approx(4.0 + 3 * 2.0)


def test_a_shortcut_joins_the_block_in_the_block_s_layout():
    """ResNet's first block: the shortcut convolution and the block's first convolution both
    take the stem's output; the block's last convolution's output is the sum's first term.
    The shortcut alone would compute contiguous (as the stem leaves it), but the sum would
    then read it across layouts, dearer than converting it first."""
    faster_cl = (Option("torch", "contiguous", 5.0, "contiguous"),
                 Option("torch", "channels_last", 3.0, "channels_last"))  # fmt: skip
    shortcut = (Option("im2col", "contiguous", 4.0, "contiguous"),
                Option("torch", "channels_last", 4.5, "channels_last"))  # fmt: skip
    layers = [
        Layer("stem", faster_cl[:1], "contiguous", CONVERT),
        Layer("downsample", shortcut, None, CONVERT, 0),
        Layer("conv1", faster_cl, None, CONVERT, 0),
        Layer("conv2", faster_cl, None, CONVERT, 2),
    ]
    alone = plan_layers(layers)
    assert [s.layout for s in alone.steps] == ["contiguous", "contiguous"] + ["channels_last"] * 2
    read_across = {("contiguous", "channels_last"): 2.0, ("channels_last", "contiguous"): 2.0}
    plan = plan_layers(layers, joins=[Join(3, 1, read_across)])
    assert [s.layout for s in plan.steps] == ["contiguous"] + ["channels_last"] * 3
    assert plan.join_ms == 0 and plan.total_ms == pytest.approx(5.0 + 4.5 + 1.0 + 3.0 + 1.0 + 3.0)
    # an imposed first term: the shortcut is charged reading it into that layout
    plan = plan_layers(layers, joins=[Join("channels_last", 1, read_across)])
    assert plan.steps[1].layout == "channels_last"


def test_too_many_live_layouts_are_refused():
    options = (Option("torch", "contiguous", 1.0, "contiguous"),)
    layers = [Layer(f"l{i}", options, None, CONVERT, 0 if i else None) for i in range(3)]
    joins = [Join(i, 2, CONVERT) for i in range(2)]
    assert plan_layers(layers, joins=joins).total_ms == 3.0
    layers = [Layer(f"l{i}", options) for i in range(MAX_LIVE + 3)]
    joins = [Join(i, MAX_LIVE + 2, CONVERT) for i in range(MAX_LIVE + 1)]
    with pytest.raises(ValueError, match="layouts live at once"):
        plan_layers(layers, joins=joins)


def test_a_source_must_be_an_earlier_layer():
    options = (Option("torch", "contiguous", 1.0, "contiguous"),)
    with pytest.raises(ValueError, match="layer 'b': source 1 is not an earlier layer"):
        plan_layers([Layer("a", options), Layer("b", options, None, CONVERT, 1)])


def test_an_unmeasured_conversion_is_never_planned():
    options = (Option("torch", "contiguous", 9.0, "contiguous"),
               Option("fast", "channels_last", 1.0, "channels_last"))  # fmt: skip
    plan = plan_layers([Layer("a", options, None, {})])
    assert plan.steps[0].layout == "contiguous"
    assert math.isinf(plan_cost([Layer("a", options, None, {})], [options[1]]))


def test_a_layer_without_options_is_named():
    with pytest.raises(ValueError, match="layer 'x': no option"):
        plan_layers([Layer("x", ())])
