"""Where the per-layer plan's inputs come from (`convbench.flows.plan`): for each convolution
call of a model's eager forward, the layout its input arrives in and whose output layout it
carries, and the elementwise joins (residual sums) whose terms carry two calls' layouts.

Found by running the model with its convolutions' outputs converted to the other layout:

1. the first forward records each call's input and output layout;
2. a second, with every output converted, shows which inputs follow the convolutions' layout
   (they change) and which arrive in one the ops impose whatever the convolutions returned
   (a ``LayerNorm2d`` written with permutes hands channels-last strides on; so does a
   ConvNeXt block's residual sum whose first term comes from such a norm);
3. then, on one sample of the batch, one forward per call with that call's output alone
   converted: an input, or a term of an elementwise op on two tensors of one shape, that
   changes with it carries its layout; of several, the latest call's. That finds the call an
   input follows — the one before it, or past a residual sum the call whose output is the
   sum's first term (a sum takes its first term's layout): in ResNet-50 the next block's
   ``conv1`` follows the previous block's ``conv3``, not its ``downsample``; in a ConvNeXt
   stage every depthwise convolution follows the stage's downsampling convolution — and the
   two layouts each residual sum adds (`Joined`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from convbench.problem.layout import layout_of, to_layout
from convbench.problem.trace import layer_names

Shape = tuple[int, ...]


class Traced(NamedTuple):
    """One convolution call of the model's eager forward: its layer, the layout its input
    arrived in and its output left in, whether its input followed the layout of the calls
    before it when their outputs were flipped (None: not known), and where it follows, the
    index of the call whose output it follows (None: the call before it)."""

    name: str
    source: str
    out: str
    follows: bool | None = None
    origin: int | None = None


class Joined(NamedTuple):
    """An elementwise op on two tensors of one shape (a residual sum): per term, the index of
    the call whose output layout it carries, or the layout it has whatever the calls return;
    and the op's shape. Its result keeps the first term's layout."""

    first: int | str
    second: int | str
    shape: Shape


class Probed(NamedTuple):
    """`probe`'s findings: the calls in order, and the joins whose terms carry two
    different calls' layouts, or one call's and an imposed layout."""

    calls: list[Traced]
    joins: list[Joined]


def hooked_forward(model: nn.Module, x: torch.Tensor, before, after=None) -> None:
    """One eager inference forward of ``model`` on ``x`` with ``before(name, module, input)``
    called as each convolution is entered and ``after(output)`` as it returns (its result
    replaces the output); the hooks removed and the model's mode restored after."""
    handles = []
    for module, name in layer_names(model).items():
        handles.append(module.register_forward_pre_hook(
            lambda mod, args, name=name: before(name, mod, args[0])))  # fmt: skip
        if after is not None:
            handles.append(module.register_forward_hook(lambda mod, args, out: after(out)))
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)


class _Terms(TorchFunctionMode):
    """Records, for each op called on two tensors of one shape (3-D or 4-D) as its first two
    arguments, the shape and both layouts."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[Shape, str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        tensors = [a for a in args[:2] if isinstance(a, torch.Tensor)]
        if (
            len(tensors) == 2
            and tensors[0].dim() in (3, 4)
            and tensors[0].shape == tensors[1].shape
        ):
            self.seen.append((tuple(tensors[0].shape), *map(layout_of, tensors)))
        return func(*args, **(kwargs or {}))


def _forward(model: nn.Module, x: torch.Tensor, flip: Sequence[int] = (), was=None):
    """Each convolution call of an eager forward of ``model`` in order, [name, its input's
    layout, its output's layout], with the outputs of the calls in ``flip`` converted to the
    other layout than ``was`` (a first forward's calls) saw them in; and the joins' terms
    (`_Terms`)."""
    calls: list[list] = []
    flip = set(flip)

    def after(out):
        i = len(calls) - 1
        if i in flip:
            out = to_layout(out, "contiguous" if was[i][2] == "channels_last" else "channels_last")
        calls[-1].append(layout_of(out))
        return out

    terms = _Terms()
    with terms:
        hooked_forward(model, x, lambda name, mod, t: calls.append([name, layout_of(t)]), after)
    return calls, terms.seen


def _flipped(model: nn.Module, x: torch.Tensor, flip: Sequence[int], was: list):
    """`_forward` with the outputs in ``flip`` converted; None where that forward fails (an
    op that needs the layout it was written for) or calls other layers than ``was``."""
    try:
        calls, terms = _forward(model, x, [i for i in flip if i < len(was)], was)
    except (RuntimeError, ValueError):
        return None
    return (calls, terms) if [c[0] for c in calls] == [c[0] for c in was] else None


def probe(model: nn.Module, x: torch.Tensor) -> Probed:
    """Each convolution call of an eager forward of ``model`` on ``x``, in order, as it
    arrives and leaves and whose layout it follows, and the joins (module docstring). Where
    the second forward fails or calls other layers, or the conversion does not change an
    output's layout (a 1×1 image), ``follows`` is None."""
    first, _ = _forward(model, x)
    second = _flipped(model, x, range(len(first)), first)
    found = []
    for i, (name, source, out) in enumerate(first):
        follows = None
        if second and i and second[0][i - 1][2] != first[i - 1][2]:
            follows = second[0][i][1] != source
        found.append(Traced(name, source, out, follows))
    if second is None:
        return Probed(found, [])
    origins, joins = _carriers(model, x[:1], first, [i for i, t in enumerate(found) if t.follows])
    batch = tuple(x.shape[:1])
    joins = [j._replace(shape=batch + j.shape[1:]) for j in joins]
    return Probed([t._replace(origin=origins.get(i)) for i, t in enumerate(found)], joins)


def _carriers(model: nn.Module, x: torch.Tensor, first: list, following) -> tuple[dict, list]:
    """On ``x`` (one sample), one forward per call with its output alone converted: for the
    calls in ``following``, the latest call whose conversion changes its input's layout;
    and the joins whose terms' layouts change with a call's (`Joined`). A call not found
    (an input that follows only several calls converted together) is left out, and taken
    to follow the call before it. Nothing where the sample's forward calls other layers
    than ``first`` or one converted forward fails."""
    base = _flipped(model, x, (), first)
    if base is None:
        return {}, []
    calls, terms = base
    origins: dict[int, int] = {}
    carried: dict[tuple[int, int], int] = {}  # (term's op, 0 or 1) → the latest call
    for j in range(len(calls)):
        flipped = _flipped(model, x, [j], calls)
        if flipped is None or len(flipped[1]) != len(terms):
            return {}, []
        for i in following:
            if i > j and flipped[0][i][1] != calls[i][1]:
                origins[i] = j
        for k, (seen, now) in enumerate(zip(terms, flipped[1], strict=True)):
            for t in (0, 1):
                if now[1 + t] != seen[1 + t]:
                    carried[(k, t)] = j
    joins = []
    for k, (shape, *layouts) in enumerate(terms):
        ends = [carried.get((k, t), layouts[t]) for t in (0, 1)]
        if ends[0] != ends[1] and any(isinstance(e, int) for e in ends):
            joins.append(Joined(ends[0], ends[1], shape))
    return origins, joins


def arrivals(traced: Sequence[Traced]) -> list[tuple[str | None, int | None]]:
    """Per call: the layout the ops before it impose, or None where they keep the layout of
    an earlier call's output, with that call's index (None: the call before it); the first
    call's input is the model's. Where the probe did not say (``follows`` None), the ops are
    taken to keep the layout where the input arrived in the layout the previous call's
    output left in."""
    found: list[tuple[str | None, int | None]] = []
    for i, call in enumerate(traced):
        if not i:
            found.append((call.source, None))
        elif call.follows is not None:
            found.append((None, call.origin) if call.follows else (call.source, None))
        else:
            found.append((None if call.source == traced[i - 1].out else call.source, None))
    return found
