"""The per-layer plan of `convbench tune`: each convolution's backend × layout, chosen to
minimise the layers' times plus the layout conversions between them (pure).

The layers are the model's convolution calls in execution order, a chain. Each has its
options: a backend in a layout, its measured time there, and the layout its output comes out
in. Its input arrives in the previous layer's output layout where the ops in between keep
the layout (``arrives`` None), or in the layout those ops impose (``arrives``: the layout the
trace saw, e.g. the channels-last strides a ``LayerNorm2d`` written with permutes hands on).
Where the option's layout is not the one that arrives, the layer converts its input first,
at the measured cost of that conversion for its input's shape.

On a chain this is solved exactly by dynamic programming over the layout the activation is
in: O(layers × options). Anderson & Gregg ("Optimal DNN primitive selection with partitioned
boolean quadratic programming", CGO 2018) pose the general graph problem (PBQP, NP-hard); on
a chain of convolutions it reduces to this recurrence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


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
    before it impose one (None: the previous layer's output flows in; for the first layer,
    the model's input layout), and the cost of converting its input, (from, to) → ms."""

    name: str
    options: tuple[Option, ...]
    arrives: str | None = None
    convert_ms: Mapping[tuple[str, str], float] | None = None

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
class Plan:
    """The chosen steps; ``conv_ms`` the layers' times, ``convert_ms`` the conversions'."""

    steps: tuple[Step, ...]

    @property
    def conv_ms(self) -> float:
        return sum(s.ms for s in self.steps)

    @property
    def convert_ms(self) -> float:
        return sum(s.convert_ms for s in self.steps)

    @property
    def total_ms(self) -> float:
        return self.conv_ms + self.convert_ms


def _incoming(layer: Layer, previous: str) -> str:
    return layer.arrives if layer.arrives is not None else previous


def plan_chain(layers: Sequence[Layer], start: str = "contiguous") -> Plan:
    """The plan of least total time over ``layers`` (execution order), the model's input in
    ``start``. Ties go to the earlier option. ValueError naming the layer with no option."""
    # best[layout the activation is in] = (total so far, steps so far)
    best: dict[str, tuple[float, tuple[Step, ...]]] = {start: (0.0, ())}
    for layer in layers:
        if not layer.options:
            raise ValueError(f"layer {layer.name!r}: no option to plan with")
        nxt: dict[str, tuple[float, tuple[Step, ...]]] = {}
        for state, (total, steps) in best.items():
            arrives = _incoming(layer, state)
            for option in layer.options:
                convert = layer.conversion(arrives, option.layout)
                cost = total + convert + option.ms
                if option.out_layout not in nxt or cost < nxt[option.out_layout][0]:
                    step = Step(layer.name, option.backend, option.layout, option.ms,
                                option.out_layout, arrives, convert)  # fmt: skip
                    nxt[option.out_layout] = (cost, (*steps, step))
        best = nxt
    if not best:
        return Plan(())
    return Plan(min(best.values(), key=lambda found: found[0])[1])


def plan_cost(layers: Sequence[Layer], choice: Sequence[Option], start: str = "contiguous"):
    """The total time of running ``layers`` with ``choice`` (one option each), conversions
    included: what `plan_chain` minimises (for tests and for pricing a given plan)."""
    total, state = 0.0, start
    for layer, option in zip(layers, choice, strict=True):
        arrives = _incoming(layer, state)
        total += layer.conversion(arrives, option.layout) + option.ms
        state = option.out_layout
    return total
