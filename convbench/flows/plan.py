"""The per-layer plan of `convbench tune`: each convolution's backend × layout for inference,
from the layers measured in both layouts, the layouts the model really hands its layers, and
the measured cost of converting between layouts (`convbench.analysis.layout_plan` solves it).

1. **where inputs arrive** (`convbench.flows.arrivals.probe`): forwards of the model with
   its convolutions' outputs converted to the other layout show, for each call, the layout
   its input arrives in, whether it follows a call's output layout and whose, and the
   residual sums whose terms carry two calls' layouts.
2. **the options** (`layer_options`): per call and layout, the forward decision for that
   layout (`convbench.analysis.decisions`: torch unless a candidate within tolerance is
   significantly faster there) and its measured time. A tuned layer returns its output in the
   layout it computed in (`convbench.backends.library`), so where the backend's own output
   came out in another layout, the conversion of the output is added to the option's time.
3. **the conversions** (`conversion_costs`): each layout change the plan may need, timed for
   the tensor shapes at the model's layer boundaries, in interleaved rounds, right after the
   layers were measured.
4. **the plan** (`make_plan`): the dynamic programme over the calls, the calls they follow
   and the sums (`convbench.analysis.layout_plan.plan_layers`; a sum that reads a term
   across layouts is charged the conversion of it), and its record for the decisions file
   (`convbench.store.decisions`: ``plan``).

The plan minimises the layers' times as measured apart (warm, back to back); its predicted
convolution time comes from replaying the planned layers in execution order
(`convbench.flows.replay`). Either is the convolutions' time and the conversions' — not the
model's: pointwise ops, pooling and the other layers run around them, and a layout change also
changes their speed. `convbench tune` prints the prediction beside the model's measured time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from convbench.analysis.decisions import BASELINE, Decision
from convbench.analysis.layout_plan import Join, Layer, Option, Plan, plan_layers
from convbench.flows.arrivals import Joined, Traced, arrivals, probe
from convbench.measure.clocks import clock_for
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure_interleaved
from convbench.measure.envinfo import decision_context as context_of
from convbench.problem.axes import LAYOUTS, dtype_name
from convbench.problem.layout import STRIDED, to_layout
from convbench.problem.trace import ConvCall

Shape = tuple[int, ...]


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


def forward_decisions(decisions: Sequence[Decision]) -> dict[tuple[str, str], Decision]:
    """The forward decisions by (problem key, layout): each layer's options per layout."""
    return {(d.problem, d.layout): d for d in decisions if d.pass_ == "forward"}


def make_plan(
    calls: Sequence[ConvCall],
    traced: Sequence[Traced],
    decisions: Sequence[Decision],
    out_layouts: dict[tuple[str, str, str], str],
    costs: dict[Shape, dict[tuple[str, str], float]],
    joined: Sequence[Joined] = (),
) -> tuple[Plan, list[ConvCall]]:
    """The per-layer plan over the convolution calls the trace described (``calls``, in
    order, with those it could not; ``traced``: `convbench.flows.arrivals.probe`'s calls of
    the same forward; ``joined``: its joins), and the calls it plans. A call whose input
    follows one the trace could not describe takes its input as the trace saw it arrive;
    a join's term carried by such a call, its layout as the trace saw it."""
    forward = forward_decisions(decisions)
    layers: list[Layer] = []
    planned: list[ConvCall] = []
    index: dict[int, int] = {}  # call → its layer
    for i, (call, (arrives, origin)) in enumerate(zip(calls, arrivals(traced), strict=True)):
        p = call.problem
        if p is None:
            continue
        origin = i - 1 if origin is None else origin
        if arrives is None and i and origin not in index:
            arrives = traced[i].source
        options = layer_options(call, forward, out_layouts, costs.get(p.output_shape, {}))
        if not options:  # nothing measured: torch as it arrives, at no predicted cost
            as_is = "contiguous" if arrives in (None, STRIDED) else arrives
            options = (Option(BASELINE, as_is, 0.0, as_is),)
        index[i] = len(layers)
        source = index.get(origin) if arrives is None else None
        layers.append(Layer(call.path, options, arrives, costs.get(p.input_shape, {}), source))
        planned.append(call)
    joins = [
        Join(*(index.get(e, traced[e].out) if isinstance(e, int) else e for e in j[:2]),
             costs.get(j.shape, {}))
        for j in joined
    ]  # fmt: skip
    start = traced[0].source if traced else "contiguous"
    start = "contiguous" if start == STRIDED else start
    try:
        return plan_layers(layers, start, joins), planned
    except ValueError:  # more layouts live at once than the programme carries: no sums
        return plan_layers(layers, start), planned


def headroom(
    calls: Sequence[ConvCall], traced: Sequence[Traced], decisions: Sequence[Decision]
) -> tuple[float, float]:
    """Milliseconds measured apart, summed over the calls with both: torch's in the layout
    the eager model hands each call (what the original runs), and the least of that and each
    layout's decided option, with no conversion — what no plan of these options beats as
    measured apart (inside the model a layer costs more or less)."""
    forward = forward_decisions(decisions)
    original = best = 0.0
    for call, seen in zip(calls, traced, strict=True):
        if call.problem is None:
            continue
        as_is = forward.get(
            (call.problem.key, seen.source), forward.get((call.problem.key, "contiguous"))
        )
        found = [forward.get((call.problem.key, layout)) for layout in LAYOUTS]
        times = [d.median_ms for d in found if d is not None and d.median_ms is not None]
        if as_is is None or as_is.torch_ms is None:
            continue
        original += as_is.torch_ms
        best += min([as_is.torch_ms, *times])
    return original, best


def per_layer_plan(trace, model, x, decisions, frame, timing, say) -> dict | None:
    """The plan's record for the decisions file (`plan_record`), after measuring the
    conversions it may need; None, with one line saying why, where the model's eager
    forward does not call the convolutions the trace saw, in that order."""
    traced, joined = probe(model, x)
    if [c.path for c in trace.calls] != [t[0] for t in traced]:
        say("per-layer plan: skipped — the model's forward called its convolutions in "
            "another order than the trace saw")  # fmt: skip
        return None
    recorded = [c for c in trace.calls if c.problem is not None]
    shapes = boundary_shapes(recorded) + [j.shape for j in joined]
    costs = conversion_costs(shapes, x.dtype, str(x.device), timing)
    ok = frame[(frame["status"] == "ok") & (frame["direction"] == "forward")]
    out_layouts = {(r.case, r.layout, r.backend): r.out_layout for r in ok.itertuples()}
    plan, planned = make_plan(trace.calls, traced, decisions, out_layouts, costs, joined)
    say(summary(plan))
    record = plan_record(plan, planned, x, context_of(str(x.device)))
    record["original_ms"], record["floor_ms"] = headroom(trace.calls, traced, decisions)
    return record


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
        conv_ms=plan.conv_ms, convert_ms=plan.convert_ms, join_ms=plan.join_ms,
        plan_ms=plan.total_ms,
        predicted_ms=plan.conv_ms + plan.convert_ms,  # until `convbench.flows.replay` replays it
    )  # fmt: skip


def summary(plan: Plan) -> str:
    """One line: how many layers compute in which layout, the conversions, the prediction."""
    counts = {layout: sum(s.layout == layout for s in plan.steps) for layout in LAYOUTS}
    switches = sum(s.converts for s in plan.steps)
    per = ", ".join(f"{n} in {layout}" for layout, n in counts.items() if n)
    joins = f"; {plan.join_ms:.2f} ms of sums reading a term across layouts" if plan.join_ms else ""
    return (
        f"per-layer plan: {per}; {switches} conversion(s) ({plan.convert_ms:.2f} ms){joins}; "
        f"{plan.total_ms:.2f} ms in all, measured apart"
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


def headroom_line(record: dict, timed: Sequence) -> str:
    """How much the convolutions themselves could give (`headroom`): the original's
    convolutions against each layer's fastest option, and the speedup that saving alone
    would give the original's measured inference time, where it was timed — an estimate
    from layers measured apart, not a bound: a layer costs more or less inside the model,
    and BatchNorms folded into tuned layers and a layout's effect on the other ops come on
    top."""
    original, floor = record["original_ms"], record["floor_ms"]
    line = (
        f"per-layer plan: the original's convolutions take {original:.2f} ms measured apart, "
        f"each one's fastest option in either layout {floor:.2f} ms without conversions"
    )
    found = [e for e in timed if e.mode == "inference"]
    if found:
        model_ms = found[0].original_ms
        line += (
            f": {original - floor:.2f} ms of the original's {model_ms:.2f} ms, "
            f"{model_ms / (model_ms - (original - floor)):.3f}× from the convolutions alone if "
            "the saving holds inside the model (folded BatchNorms and the layout's effect on "
            "the other ops come on top)"
        )
    return line
