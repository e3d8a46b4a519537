"""The per-layer plan of `convbench tune`: each convolution's backend × layout for inference,
from the layers measured in both layouts, the layouts the model really hands its layers, and
the measured cost of converting between layouts (`convbench.analysis.layout_plan` solves it).

1. **where inputs arrive** (`layer_layouts`): an eager forward of the model with hooks on its
   convolutions records the layout each call's input arrives in and its output leaves in;
   a second, with every convolution's output flipped to the other layout, shows where the
   ops between two calls keep the layout (the second call's input follows the flip) and
   where they impose one whatever came before (a ``LayerNorm2d`` written with permutes
   hands channels-last strides on; so does a ConvNeXt block's residual sum, whose MLP
   branch comes back through a permute).
2. **the options** (`layer_options`): per call and layout, the forward decision for that
   layout (`convbench.analysis.decisions`: torch unless a candidate within tolerance is
   significantly faster there) and its measured time. A tuned layer returns its output in the
   layout it computed in (`convbench.backends.library`), so where the backend's own output
   came out in another layout, the conversion of the output is added to the option's time.
3. **the conversions** (`conversion_costs`): each layout change the plan may need, timed for
   the tensor shapes at the model's layer boundaries, in interleaved rounds, right after the
   layers were measured.
4. **the plan** (`make_plan`): the dynamic programme over the calls in execution order, and
   its record for the decisions file (`convbench.store.decisions`: ``plan``).

The plan minimises the layers' times as measured apart (warm, back to back); its predicted
convolution time comes from replaying the planned layers in execution order
(`convbench.flows.replay`). Either is the convolutions' time and the conversions' — not the
model's: pointwise ops, pooling and the other layers run around them, and a layout change also
changes their speed. `convbench tune` prints the prediction beside the model's measured time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from convbench.analysis.decisions import BASELINE, Decision
from convbench.analysis.layout_plan import Layer, Option, Plan, plan_chain
from convbench.measure.clocks import clock_for
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure_interleaved
from convbench.measure.envinfo import decision_context as context_of
from convbench.problem.axes import LAYOUTS, dtype_name
from convbench.problem.layout import STRIDED, layout_of, to_layout
from convbench.problem.trace import ConvCall, layer_names

Shape = tuple[int, ...]


class Traced(NamedTuple):
    """One convolution call of the model's eager forward: its layer, the layout its input
    arrived in and its output left in, and whether its input followed the layout of the call
    before it when that call's output was flipped (`layer_layouts`; None: not known)."""

    name: str
    source: str
    out: str
    follows: bool | None = None


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


def _forward(model: nn.Module, x: torch.Tensor, post) -> list[list]:
    """Each convolution call of an eager inference forward of ``model``, in order: [name,
    its input's layout, its output's layout], the output of the i-th call replaced by
    ``post(i, output)``."""
    calls: list[list] = []

    def after(out):
        out = post(len(calls) - 1, out)
        calls[-1].append(layout_of(out))
        return out

    hooked_forward(model, x, lambda name, mod, t: calls.append([name, layout_of(t)]), after)
    return calls


def layer_layouts(model: nn.Module, x: torch.Tensor) -> list[Traced]:
    """Each convolution call of an eager forward of ``model`` on ``x``, in order, as it
    arrives and leaves (`Traced`). A second forward, with every convolution's output
    converted to the other layout than it had in the first, shows which inputs follow the
    layout of the calls before them (the ops between keep it) and which arrive in one the
    ops impose whatever the convolutions returned (a ``LayerNorm2d`` written with permutes;
    a residual sum whose other term comes from such a norm). Where the second forward fails
    or calls other layers, or the conversion does not change an output's layout (a 1×1
    image), ``follows`` is None.

    All outputs change at once: an input that depends on an earlier call than the one
    before it (a residual stream) follows where the calls of its region share a layout, as
    the plan mostly has them; it is then taken to follow the call before it. The replay and
    the end-to-end rounds judge the plan as built."""
    first = _forward(model, x, lambda i, out: out)

    def flipped(i: int, out: torch.Tensor) -> torch.Tensor:  # the other layout than first's
        was = first[i][2] if i < len(first) else None
        return to_layout(out, "contiguous" if was == "channels_last" else "channels_last")

    try:
        second = _forward(model, x, flipped)
    except (RuntimeError, ValueError):  # an op that needs the layout it was written for
        second = []
    same = [c[0] for c in second] == [c[0] for c in first]
    found = []
    for i, (name, source, out) in enumerate(first):
        follows = None
        if same and i and second[i - 1][2] != first[i - 1][2]:
            follows = second[i][1] == second[i - 1][2] and second[i][1] != source
        found.append(Traced(name, source, out, follows))
    return found


def arrivals(traced: Sequence[Traced]) -> list[str | None]:
    """Per call: the layout the ops before it impose, or None where they keep the previous
    call's output layout; the first call's input is the model's. Where the probe did not
    say (``follows`` None), the ops are taken to keep the layout where the input arrived in
    the layout the previous call's output left in."""
    found: list[str | None] = []
    for i, call in enumerate(traced):
        if not i:
            found.append(call.source)
        elif call.follows is not None:
            found.append(None if call.follows else call.source)
        else:
            found.append(None if call.source == traced[i - 1].out else call.source)
    return found


def conversion_costs(
    shapes: Iterable[Shape], dtype: torch.dtype, device: str, timing: TimingConfig
) -> dict[Shape, dict[tuple[str, str], float]]:
    """Milliseconds of each layout change of a tensor of each of ``shapes`` (3-D and 4-D):
    (from, to) → median, both ways, timed in interleaved rounds per shape. A tensor in
    neither layout (`STRIDED`) is charged the dearer of the two conversions."""
    found: dict[Shape, dict[tuple[str, str], float]] = {}
    gen = torch.Generator().manual_seed(0)
    pairs = [(a, b) for a in LAYOUTS for b in LAYOUTS if a != b]
    for shape in dict.fromkeys(tuple(s) for s in shapes):
        base = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
        sources = {layout: to_layout(base, layout) for layout in LAYOUTS}
        fns = [lambda t=sources[a], b=b: to_layout(t, b) for a, b in pairs]
        measured = measure_interleaved(fns, timing, clock_for(device))
        costs = {pair: m.median_ms for pair, m in zip(pairs, measured, strict=True)}
        for layout in LAYOUTS:
            costs[(STRIDED, layout)] = max(costs.values())
        found[shape] = costs
    return found


def layer_options(
    call: ConvCall,
    decisions: dict[tuple[str, str], Decision],
    out_layouts: dict[tuple[str, str, str], str],
    convert: dict[tuple[str, str], float],
) -> tuple[Option, ...]:
    """The options of one call: per layout measured, its forward decision and time, with
    the conversion of the output into that layout where the backend's came out in another
    (``out_layouts``: (case, layout, backend) → the layout its output was in;
    ``convert``: the costs for the call's output shape)."""
    options = []
    for layout in LAYOUTS:
        d = decisions.get((call.problem.key, layout))
        if d is None or d.median_ms is None:
            continue
        ms = float(d.median_ms)
        out = out_layouts.get((d.case, layout, d.backend), layout)
        if out != layout:
            ms += convert.get((out, layout), convert.get((STRIDED, layout), 0.0))
        options.append(Option(d.backend, layout, ms, layout))
    return tuple(options)


def make_plan(
    calls: Sequence[ConvCall],
    traced: Sequence[Traced],
    decisions: Sequence[Decision],
    out_layouts: dict[tuple[str, str, str], str],
    costs: dict[Shape, dict[tuple[str, str], float]],
) -> tuple[Plan, list[ConvCall]]:
    """The per-layer plan over the convolution calls the trace described (``calls``, in
    order, with those it could not; ``traced``: `layer_layouts` of the same forward), and
    the calls it plans. A call after one the trace could not describe takes its input as
    the trace saw it arrive."""
    forward = {(d.problem, d.layout): d for d in decisions if d.pass_ == "forward"}
    layers, planned = [], []
    arrived = arrivals(traced)
    for i, (call, arrives) in enumerate(zip(calls, arrived, strict=True)):
        p = call.problem
        if p is None:
            continue
        if i and calls[i - 1].problem is None:
            arrives = traced[i].source
        options = layer_options(call, forward, out_layouts, costs.get(p.output_shape, {}))
        if not options:  # nothing measured: torch as it arrives, at no predicted cost
            as_is = "contiguous" if arrives in (None, STRIDED) else arrives
            options = (Option(BASELINE, as_is, 0.0, as_is),)
        layers.append(Layer(call.path, options, arrives, costs.get(p.input_shape, {})))
        planned.append(call)
    start = traced[0].source if traced else "contiguous"
    return plan_chain(layers, "contiguous" if start == STRIDED else start), planned


def per_layer_plan(trace, model, x, decisions, frame, timing, say) -> dict | None:
    """The plan's record for the decisions file (`plan_record`), after measuring the
    conversions it may need; None, with one line saying why, where the model's eager
    forward does not call the convolutions the trace saw, in that order."""
    traced = layer_layouts(model, x)
    if [c.path for c in trace.calls] != [t[0] for t in traced]:
        say("per-layer plan: skipped — the model's forward called its convolutions in "
            "another order than the trace saw")  # fmt: skip
        return None
    recorded = [c for c in trace.calls if c.problem is not None]
    costs = conversion_costs(boundary_shapes(recorded), x.dtype, str(x.device), timing)
    ok = frame[(frame["status"] == "ok") & (frame["direction"] == "forward")]
    out_layouts = {(r.case, r.layout, r.backend): r.out_layout for r in ok.itertuples()}
    plan, planned = make_plan(trace.calls, traced, decisions, out_layouts, costs)
    say(summary(plan))
    return plan_record(plan, planned, x, context_of(str(x.device)))


def boundary_shapes(calls: Sequence[ConvCall]) -> list[Shape]:
    """The tensor shapes at the layers' boundaries: every call's input and output."""
    shapes: list[Shape] = []
    for call in calls:
        shapes += [tuple(call.problem.input_shape), tuple(call.problem.output_shape)]
    return list(dict.fromkeys(shapes))


def plan_record(plan: Plan, calls: Sequence[ConvCall], x: torch.Tensor, context: dict) -> dict:
    """The decisions file's ``plan`` for inputs like ``x``: each layer's backend, layout,
    where its input arrives and whether it is converted, with the predicted times
    (`convbench.store.decisions`)."""
    from convbench.nn import device_name

    layers = [
        dict(layer=s.name, problem=call.problem.key, backend=s.backend, layout=s.layout,
             arrives=s.arrives, convert=s.converts, ms=s.ms, convert_ms=s.convert_ms)
        for s, call in zip(plan.steps, calls, strict=True)
    ]  # fmt: skip
    return dict(
        dtype=dtype_name(x.dtype), device=device_name(x.device), context=context, layers=layers,
        conv_ms=plan.conv_ms, convert_ms=plan.convert_ms, plan_ms=plan.total_ms,
        predicted_ms=plan.total_ms,  # until `convbench.flows.replay` replays the plan
    )  # fmt: skip


def summary(plan: Plan) -> str:
    """One line: how many layers compute in which layout, the conversions, the prediction."""
    counts = {layout: sum(s.layout == layout for s in plan.steps) for layout in LAYOUTS}
    switches = sum(s.converts for s in plan.steps)
    per = ", ".join(f"{n} in {layout}" for layout, n in counts.items() if n)
    return (
        f"per-layer plan: {per}; {switches} conversion(s) ({plan.convert_ms:.2f} ms); "
        f"{plan.total_ms:.2f} ms of layers and conversions, measured apart"
    )


def predicted_line(record: dict, timed: Sequence) -> str:
    """The plan's predicted convolution time beside the planned model's measured inference
    time, where it was timed (``timed``: the end-to-end comparisons, `EndToEnd`)."""
    from convbench.flows.build import PLANNED

    line = (
        f"per-layer plan: predicted {record['predicted_ms']:.2f} ms of convolutions and "
        f"conversions ({record['convert_ms']:.2f} ms of them conversions)"
    )
    found = [e for e in timed if e.variant == PLANNED and e.mode == "inference"]
    if found:
        line += (
            f"; the planned model measured {found[0].optimized_ms:.2f} ms end to end (the "
            "other layers and ops run around the convolutions)"
        )
    return line
