"""The per-layer plan's prediction against the profiler: the convolution time `convbench tune`
predicted (each layer's measured time in its planned backend and layout, plus the planned
conversions) beside the time the torch profiler measures inside the planned model.

The model is built as the decisions file's plan says (`convbench.optimize` with the plan
applied, eager, not compiled). Each convolution module's forward — the conversion of its input
where the plan switches, and the convolution — is a profiler range (``record_function``
entered by a forward pre-hook, left by a forward hook). The host's pace drifts 20–40% between
minutes, so each round also runs every planned layer alone, as tune measured it (its backend
and layout, seeded inputs of its shape, the weight prepared once), in its own range: the
script prints, per layer and in total, tune's prediction, the layers alone and the layers
inside the model — the last two from the same interleaved rounds.

    python benchmarks/plan_vs_profiler.py examples.models:resnet50 \\
        results/resnet50.decisions.json --input-shape 8,3,224,224 [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections import defaultdict

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from convbench.backends import get_backend
from convbench.measure.malloc import steady_state
from convbench.nn import load_decisions, optimize
from convbench.problem.layout import to_layout
from convbench.problem.spec import ConvProblem
from convbench.problem.trace import layer_names, load_factory
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


def layers_alone(table: DecisionTable, x_dtype: torch.dtype) -> dict[str, object]:
    """Each planned layer as tune measured it: its backend's plan in its layout, on seeded
    inputs of its shape (the forward pass, the weight prepared once)."""
    shapes = {e["problem"]: e.get("shape") for e in table.entries}
    calls = {}
    for step in table.plan["layers"]:
        problem = ConvProblem(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in shapes[step["problem"]].items()})  # fmt: skip
        x, w, b = problem.make_tensors(x_dtype)
        x, w = to_layout(x, step["layout"]), to_layout(w, step["layout"])
        plan = get_backend(step["backend"]).prepare(w, b, **problem.conv_kwargs(), input=x)
        calls[step["layer"]] = lambda plan=plan, x=x: plan.forward(x)
    return calls


def measured_ms(model, x, alone: dict, rounds: int) -> tuple[dict, dict]:
    """Milliseconds per model call in each layer's range, and of each layer alone, from the
    same interleaved rounds (a profiled model call, then every layer alone once)."""
    with torch.no_grad():
        for _ in range(2):
            model(x)
            for fn in alone.values():
                fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(rounds):
                model(x)
                for name, fn in alone.items():
                    with record_function(ALONE + name):
                        fn()
    inside: dict[str, float] = defaultdict(float)
    apart: dict[str, float] = defaultdict(float)
    for event in prof.events():
        for prefix, found in ((PREFIX, inside), (ALONE, apart)):
            if event.name.startswith(prefix):
                found[event.name[len(prefix) :]] += event.cpu_time_total / 1e3 / rounds
    return inside, apart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="PACKAGE.MODULE:FACTORY")
    parser.add_argument("decisions")
    parser.add_argument("--input-shape", required=True)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    steady_state()  # the allocator as convbench's workers and tune's end-to-end rounds keep it
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, os.getcwd())
    shape = [int(v) for v in args.input_shape.split(",")]
    original = load_factory(args.model)().eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    table = planned_table(args.decisions)
    model = optimize(copy.deepcopy(original), table, compile=False)
    ranged(model)
    inside, apart = measured_ms(model, x, layers_alone(table, x.dtype), args.rounds)
    predicted: dict[str, float] = defaultdict(float)
    for step in table.plan["layers"]:
        predicted[step["layer"]] += step["ms"] + step["convert_ms"]
    head = f"{'layer':26s} {'layout':14s} {'backend':14s}"
    print(f"{head} {'tune':>8s} {'alone':>8s} {'inside':>8s}  [ms; alone, inside: same rounds]")
    steps = {s["layer"]: s for s in table.plan["layers"]}
    for name, ms in predicted.items():
        s = steps[name]
        row = f"{name:26s} {s['layout']:14s} {s['backend']:14s}"
        print(f"{row} {ms:8.3f} {apart[name] + s['convert_ms']:8.3f} {inside.get(name, 0):8.3f}")
    total_p = sum(predicted.values())
    total_a = sum(apart[n] + steps[n]["convert_ms"] for n in predicted)
    total_m = sum(inside.get(n, 0) for n in predicted)
    print(f"{'total':56s} {total_p:8.2f} {total_a:8.2f} {total_m:8.2f}")
    print(f"inside / tune's prediction: {total_m / total_p:.3f} (another minute: host pace)")
    print(f"inside / alone, same rounds: {total_m / total_a:.3f}")


if __name__ == "__main__":
    main()
