"""Where the time of a compiled model goes: ``torch.compile`` of the original against
``torch.compile`` of the tuned model, as `convbench tune` builds them (Inductor, freezing,
static shapes; the tuned one with its BatchNorms folded), profiled op by op.

The decisions are a tune's decisions file, with every decision the model-level choice sent
back to torch restored (``reverted_from``): the tuned model as tune timed it. For each model
the script prints the time per call and its ops grouped — the tuned layers
(``convbench::conv``), oneDNN's convolutions (Inductor's prepacked ``mkldnn`` calls and
PyTorch's own), layout conversions and copies, and the rest (Inductor's fused kernels) —
then the ten ops that take the most time.

    python benchmarks/compiled_profile.py examples.models:resnet50 \\
        results/resnet50.decisions.json --input-shape 8,3,224,224 [--threads 2] [--calls 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from convbench.flows import build
from convbench.nn import load_decisions
from convbench.nn.fold import foldable
from convbench.problem.trace import load_factory
from convbench.store.decisions import DecisionTable

GROUPS = (
    ("tuned layers (convbench::conv)", ("convbench::conv",)),
    ("oneDNN convolutions", ("mkldnn", "convolution", "conv2d")),
    ("layout conversions, copies", ("copy_", "clone", "contiguous", "_to_copy", "reorder")),
)


def tuned_table(path: str) -> DecisionTable:
    table = load_decisions(path)
    entries = [dict(e, backend=e.get("reverted_from") or e["backend"]) for e in table.entries]
    return DecisionTable(table.path, entries, table.model, plan=table.plan)


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "the rest (Inductor's fused kernels, pooling, …)"


def profiled(model, x, calls: int) -> tuple[float, dict, list]:
    with torch.no_grad():
        model(x)  # compiles
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model(x)
    events = [e for e in prof.key_averages() if e.key != "ProfilerStep*"]
    total = sum(e.self_cpu_time_total for e in events) / calls / 1e3
    groups: dict = defaultdict(float)
    for e in events:
        groups[group_of(e.key)] += e.self_cpu_time_total / calls / 1e3
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    return (
        total,
        dict(groups),
        [(e.key, e.count // calls, e.self_cpu_time_total / calls / 1e3) for e in top],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("factory")
    parser.add_argument("decisions")
    parser.add_argument("--input-shape", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, os.getcwd())
    shape = tuple(int(v) for v in args.input_shape.split(","))
    original = load_factory(args.factory)().eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    table = tuned_table(args.decisions)
    tuned_layers = {layer for e in table.entries if e["backend"] != "torch"
                    for layer in e.get("layers") or []}  # fmt: skip
    folds = [pair for pair in foldable(original, x) if pair[0] in tuned_layers]
    how = dict(folds=folds, compile_kwargs=build.compile_options(("inference",)))
    for name in (build.COMPILED, build.TUNED_COMPILED):
        model = build.build(original, table, build.VARIANTS[name], "cpu", **how)
        total, groups, top = profiled(model, x, args.calls)
        print(f"\n{name}: {total:.1f} ms per call (profiler self time)")
        for group, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f"  {ms:8.1f} ms  {100 * ms / total:5.1f}%  {group}")
        print("  top ops:")
        for key, count, ms in top:
            print(f"  {ms:8.1f} ms  ×{count:<4} {key}")


if __name__ == "__main__":
    main()
