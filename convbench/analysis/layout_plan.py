"""The per-layer plan of `convbench tune`: each convolution's backend × layout, chosen to
minimise the layers' times plus the layout conversions between them (pure).

The layers are the model's convolution calls in execution order. Each has its options: a
backend in a layout, its measured time there, and the layout its output comes out in. Its
input arrives in the output layout of one earlier layer, its *source*, where the ops in
between keep the layout (``arrives`` None; the source is the previous layer unless
``source`` names another: a residual stream carries the layout of the convolution that
began it past the convolutions of its branches), or in the layout those ops impose
(``arrives``: the layout the trace saw, e.g. the channels-last strides a ``LayerNorm2d``
written with permutes hands on). Where the option's layout is not the one that arrives, the
layer converts its input first, at the measured cost of that conversion for its input's
shape.

An elementwise op on two terms whose layouts come from different layers (a residual sum of
a block's branch and its shortcut: `Join`) keeps its first term's layout and reads the
second across layouts where they differ, at about the cost of converting it; it is charged
that.

The plan is solved exactly by dynamic programming over the layers in execution order, its
state the output layouts of the layers a later layer or join still needs: in a chain, the
previous layer's; in a residual network, also the shortcut's or the stream's. O(layers ×
options × 2^live), with at most a few layers live in the networks convbench tunes
(`MAX_LIVE` refuses more). On a chain it is the chain recurrence. Anderson & Gregg ("Optimal
DNN primitive selection with partitioned boolean quadratic programming", CGO 2018) pose the
general graph problem (PBQP, NP-hard); ordered by execution, a network's graph has a narrow
frontier, and the programme over it is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

#: The end-to-end variant of `convbench tune` that runs the plan (`convbench.flows.build`).
PLANNED = "tuned, per-layer layouts"


@dataclass(frozen=True)
class Option:
    """One way to run a layer: ``backend`` computing in ``layout`` in ``ms``, its output in
    ``out_layout``."""

    backend: str
    layout: str
    ms: float
    out_layout: str


@dataclass(frozen=True)
class Layer:
    """One convolution call: its options, the layout its input arrives in when the ops
    before it impose one (None: its source's output flows in; for the first layer, the
    model's input layout), the cost of converting its input, (from, to) → ms, and its
    source: the index of the earlier layer whose output layout its input arrives in where
    none is imposed (None: the layer before it)."""

    name: str
    options: tuple[Option, ...]
    arrives: str | None = None
    convert_ms: Mapping[tuple[str, str], float] | None = None
    source: int | None = None

    def conversion(self, source: str, target: str) -> float:
        """Milliseconds to bring this layer's input from ``source`` to ``target``; a pair
        not measured costs infinity (never chosen)."""
        if source == target:
            return 0.0
        return (self.convert_ms or {}).get((source, target), math.inf)


@dataclass(frozen=True)
class Step:
    """A layer as planned: its option, the layout its input arrives in, and the conversion
    before it (``convert_ms`` 0 where none)."""

    name: str
    backend: str
    layout: str
    ms: float
    out_layout: str
    arrives: str
    convert_ms: float

    @property
    def converts(self) -> bool:
        return self.arrives != self.layout


@dataclass(frozen=True)
class Join:
    """An elementwise op on two terms (a residual sum): each term's layout is a layer's
    output layout (its index) or one the ops impose (a layout). The result keeps the first
    term's layout; where the second's differs, the op reads it across layouts, charged as
    converting it (``convert_ms``: (from, to) → ms for the op's shape; a pair not measured
    costs nothing)."""

    first: int | str
    second: int | str
    convert_ms: Mapping[tuple[str, str], float] | None = None

    def cost(self, first: str, second: str) -> float:
        if first == second:
            return 0.0
        return (self.convert_ms or {}).get((second, first), 0.0)


@dataclass(frozen=True)
class Plan:
    """The chosen steps; ``conv_ms`` the layers' times, ``convert_ms`` the conversions',
    ``join_ms`` the joins' reads across layouts."""

    steps: tuple[Step, ...]
    join_ms: float = 0.0

    @property
    def conv_ms(self) -> float:
        return sum(s.ms for s in self.steps)

    @property
    def convert_ms(self) -> float:
        return sum(s.convert_ms for s in self.steps)

    @property
    def total_ms(self) -> float:
        return self.conv_ms + self.convert_ms + self.join_ms


def _sources(layers: Sequence[Layer]) -> list[int | None]:
    """Per layer, the index of the layer whose output flows into it; None where its input
    arrives in an imposed layout or is the model's. ValueError naming a layer without
    options or with a source that is not an earlier layer."""
    found: list[int | None] = []
    for i, layer in enumerate(layers):
        if not layer.options:
            raise ValueError(f"layer {layer.name!r}: no option to plan with")
        source = None if layer.arrives is not None or not i else layer.source
        if source is None and layer.arrives is None and i:
            source = i - 1
        if source is not None and not 0 <= source < i:
            raise ValueError(f"layer {layer.name!r}: source {source} is not an earlier layer")
        found.append(source)
    return found


def _incoming(layer: Layer, source: int | None, outs: Mapping[int, str], start: str) -> str:
    """The layout ``layer``'s input arrives in: the one imposed, else its source's output
    layout (``outs``), else the model's input's."""
    if layer.arrives is not None:
        return layer.arrives
    return start if source is None else outs[source]


# A join charged at a layer i: (an earlier layer e or None, its cost from e's output layout
# (None where the other term's layout is imposed) and i's option).
Term = tuple[int | None, Callable[[str | None, Option], float]]


def _joined(join: Join, mine_first: bool, fixed: str | None, out: str | None, option) -> float:
    """``join``'s cost with one term in ``option``'s output layout (the first where
    ``mine_first``) and the other in ``fixed`` or else in ``out``."""
    other = fixed if fixed is not None else out
    if mine_first:
        return join.cost(option.out_layout, other)
    return join.cost(other, option.out_layout)


def _join_terms(n: int, joins: Sequence[Join]) -> list[list[Term]]:
    """Per layer of ``n``, the joins whose later term it decides, charged where it is
    planned. ValueError naming a join with a layer that is not one of the ``n``."""
    terms: list[list[Term]] = [[] for _ in range(n)]
    for join in joins:
        ends = [t for t in (join.first, join.second) if isinstance(t, int)]
        if any(not 0 <= t < n for t in ends):
            raise ValueError(f"join {join.first!r} + {join.second!r}: no such layer")
        if not ends or join.first == join.second:
            continue
        at = max(ends)  # the later layer decides it, the other term known by then
        other = join.second if at == join.first else join.first
        earlier, fixed = (other, None) if isinstance(other, int) else (None, other)
        terms[at].append((earlier, partial(_joined, join, at == join.first, fixed)))
    return terms


#: The most layers whose output layouts the programme carries at once (`plan_layers`).
MAX_LIVE = 12


def plan_layers(
    layers: Sequence[Layer], start: str = "contiguous", joins: Sequence[Join] = ()
) -> Plan:
    """The plan of least total time over ``layers`` (execution order), the model's input in
    ``start``, with ``joins`` charged. Ties go to the earlier option. ValueError naming a
    layer with no option, or where more than `MAX_LIVE` layers' output layouts are still
    to be used at once."""
    sources = _sources(layers)
    terms = _join_terms(len(layers), joins)
    last = {e: i for i, found in enumerate(terms) for e, _ in found if e is not None}
    last.update({s: max(i, last.get(s, -1)) for i, s in enumerate(sources) if s is not None})
    live: list[int] = []  # the layers whose output layout a later layer or join still needs
    # states[their output layouts] = (cost so far, join cost so far, steps so far)
    states: dict[tuple, tuple[float, float, tuple[Step, ...]]] = {(): (0.0, 0.0, ())}
    for i, (layer, source) in enumerate(zip(layers, sources, strict=True)):
        after = [e for e in [*live, i] if last.get(e, -1) > i]
        if len(after) > MAX_LIVE:
            raise ValueError(f"layer {layer.name!r}: over {MAX_LIVE} layouts live at once")
        nxt: dict[tuple, tuple[float, float, tuple[Step, ...]]] = {}
        for key, (total, joined, steps) in states.items():
            outs = dict(zip(live, key, strict=True))
            incoming = _incoming(layer, source, outs, start)
            for option in layer.options:
                convert = layer.conversion(incoming, option.layout)
                extra = sum(cost(outs.get(e), option) for e, cost in terms[i])
                cost = total + option.ms + convert + extra
                outs[i] = option.out_layout
                state = tuple(outs[e] for e in after)
                if state not in nxt or cost < nxt[state][0]:
                    step = Step(layer.name, option.backend, option.layout, option.ms,
                                option.out_layout, incoming, convert)  # fmt: skip
                    nxt[state] = (cost, joined + extra, (*steps, step))
        states, live = nxt, after
    _, joined, steps = min(states.values(), key=lambda found: found[0])
    return Plan(steps, joined)


def plan_cost(
    layers: Sequence[Layer],
    choice: Sequence[Option],
    start: str = "contiguous",
    joins: Sequence[Join] = (),
) -> float:
    """The total time of running ``layers`` with ``choice`` (one option each), conversions
    and joins included: what `plan_layers` minimises (for tests and for pricing a plan)."""
    outs = {i: option.out_layout for i, option in enumerate(choice)}
    terms = _join_terms(len(layers), joins)
    total = 0.0
    for i, (layer, option, source) in enumerate(zip(layers, choice, _sources(layers), strict=True)):
        total += option.ms + layer.conversion(_incoming(layer, source, outs, start), option.layout)
        total += sum(cost(outs.get(e), option) for e, cost in terms[i])
    return total
