"""The per-layer plan's prediction against the profiler: the convolution time `convbench tune`
predicted (its planned layers replayed in execution order, `convbench.flows.replay`) beside
the time the torch profiler measures inside the planned model.

The model is built as the decisions file's plan says (`convbench.optimize` with the plan
applied, eager, not compiled, no folds). Each convolution module's forward — the conversion of
its input where the plan switches, and the convolution — is a profiler range
(``record_function`` entered by a forward pre-hook, left by a forward hook). The host's pace
drifts 20–40% between minutes, so each round also replays every planned layer as tune's
prediction does (a copy of its module, on a seeded input of the sizes and strides it arrives
with under the plan), in its own range. The script prints, per layer and in total: the time
the plan minimised (the layer measured apart, warm, back to back, with its conversion), tune's
prediction, the replay and the layer inside the model — the last two from the same
interleaved rounds — and, where the decisions file has the host's pace during tune's replay,
tune's prediction against the profile at equal pace (each total over the reference kernel's
median reading, `convbench.measure.pace`, one reading a round here).

    python benchmarks/plan_vs_profiler.py examples.models:resnet50 \\
        results/resnet50.decisions.json --input-shape 8,3,224,224 [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import copy
import statistics
from collections import defaultdict

import torch
from bench_args import model_args  # benchmarks/bench_args.py, beside this script
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from convbench.flows.replay import arriving, seeded_like, written
from convbench.measure.pace import reference
from convbench.nn import load_decisions, optimize
from convbench.problem.trace import layer_names
from convbench.store.decisions import DecisionTable

PREFIX = "convbench.layer:"
ALONE = "convbench.alone:"


def planned_table(path: str) -> DecisionTable:
    """The decisions with the plan applied (the layout record's ``per_layer`` set), as the
    `tuned, per-layer layouts` variant was timed."""
    table = load_decisions(path)
    if table.plan is None:
        raise SystemExit(f"{path}: no per-layer plan (tune for inference writes one)")
    entries = [dict(e, backend=e.get("reverted_from") or e["backend"]) for e in table.entries]
    layout = dict(table.layout or {}, memory_format="contiguous", per_layer=True, folds=[])
    layout.update(compile=None, device=table.plan["device"], context=table.plan["context"])
    return DecisionTable(table.path, entries, table.model, layout=layout, plan=table.plan)


def ranged(model: torch.nn.Module) -> None:
    """Each convolution's forward inside a profiler range named after its layer."""
    for module, name in layer_names(model).items():
        state = {}

        def enter(mod, args, name=name, state=state):
            state["range"] = record_function(PREFIX + name)
            state["range"].__enter__()

        def leave(mod, args, out, state=state):
            state.pop("range").__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)


def layers_alone(model: torch.nn.Module, table: DecisionTable, x: torch.Tensor) -> dict:
    """Each planned layer as tune's prediction replays it (`convbench.flows.replay`): a copy
    of the planned model's module, on a seeded input of the sizes and strides it arrives
    with under the plan, written just before each call."""
    names = {step["layer"] for step in table.plan["layers"]}
    gen = torch.Generator().manual_seed(0)
    calls = {}
    for name, module, size, stride in arriving(model, x):
        if name in names:
            calls[name] = (module, seeded_like(size, stride, x, gen))
    return calls


def measured_ms(model, x, alone: dict, rounds: int) -> tuple[dict, dict, float]:
    """Milliseconds per model call in each layer's range, and of each layer alone, from the
    same interleaved rounds (a profiled model call, then every layer alone once), and the
    host's pace over them (the reference kernel's median reading in µs, one a round)."""
    pace, readings = reference(), []
    with torch.no_grad():
        for _ in range(2):
            model(x)
            for module, t in alone.values():
                module(t)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(rounds):
                model(x)
                for name, (module, t) in alone.items():
                    written(t)
                    with record_function(ALONE + name):
                        module(t)
                readings.append(pace.take())
    inside: dict[str, float] = defaultdict(float)
    apart: dict[str, float] = defaultdict(float)
    for event in prof.events():
        for prefix, found in ((PREFIX, inside), (ALONE, apart)):
            if event.name.startswith(prefix):
                found[event.name[len(prefix) :]] += event.cpu_time_total / 1e3 / rounds
    return inside, apart, statistics.median(readings) / 1e3


def main() -> None:
    args, original, x = model_args(__doc__, "decisions")
    table = planned_table(args.decisions)
    model = optimize(copy.deepcopy(original), table, compile=False)
    alone = layers_alone(optimize(copy.deepcopy(original), table, compile=False), table, x)
    ranged(model)
    inside, replayed, pace_us = measured_ms(model, x, alone, args.rounds)
    apart: dict[str, float] = defaultdict(float)
    predicted: dict[str, float] = defaultdict(float)
    for step in table.plan["layers"]:
        apart[step["layer"]] += step["ms"] + step["convert_ms"]
        predicted[step["layer"]] += step.get("replay_ms", step["ms"] + step["convert_ms"])
    head = f"{'layer':26s} {'layout':14s} {'backend':14s}"
    print(f"{head} {'apart':>8s} {'tune':>8s} {'replay':>8s} {'inside':>8s}"
          "  [ms; replay, inside: same rounds]")  # fmt: skip
    steps = {s["layer"]: s for s in table.plan["layers"]}
    for name, ms in predicted.items():
        s = steps[name]
        row = f"{name:26s} {s['layout']:14s} {s['backend']:14s} {apart[name]:8.3f} {ms:8.3f}"
        print(f"{row} {replayed[name]:8.3f} {inside.get(name, 0):8.3f}")
    totals = [sum(found.get(n, 0) for n in predicted) for found in (apart, predicted, replayed)]
    total_m = sum(inside.get(n, 0) for n in predicted)
    print(f"{'total':56s} {totals[0]:8.2f} {totals[1]:8.2f} {totals[2]:8.2f} {total_m:8.2f}")
    print(f"inside / tune's prediction: {total_m / totals[1]:.3f} (another minute: host pace)")
    if table.plan.get("replay_pace_us"):  # each figure over the reference kernel's reading
        then = table.plan["replay_pace_us"]
        at_equal = (total_m / pace_us) / (totals[1] / then)
        print(f"  at equal pace: {at_equal:.3f} (reference kernel {then:.1f} µs during tune's "
              f"replay, {pace_us:.1f} µs here)")  # fmt: skip
    print(f"inside / replay, same rounds: {total_m / totals[2]:.3f}")
    print(f"inside / measured apart (what the plan minimised): {total_m / totals[0]:.3f}")


if __name__ == "__main__":
    main()
