"""Does an optimized model compile whole? Graph breaks and recompilations of the repository's
example models under ``torch.compile(convbench.optimize(model, decisions, compile=False),
fullgraph=True)``, in inference and in a training step.

Every convolution of each model is taken off torch — the first of ``--backends`` that computes
its forward, data gradient and weight gradient — so that each is a ``convbench::conv`` node.
Each compiled model runs three inferences (eval, no grad) and three SGD steps; the script
prints the frames Dynamo compiled (one per mode, none after the first call), the graph
breaks, the ``convbench::conv`` nodes against the model's convolutions, and the largest
relative difference from the eager original.

    python benchmarks/compile_check.py [--models vgg16,resnet50,mobilenet_v2,convnext_tiny]
        [--input-shape 2,3,64,64] [--backends winograd,im2col] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

from convbench.backends import get_backend
from convbench.measure.envinfo import decision_context
from convbench.nn import optimize
from convbench.problem.trace import trace_convs
from convbench.store.decisions import PASSES, DecisionTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, beside this folder

import examples.models as models  # noqa: E402


def decisions_off_torch(factory, shape, backends) -> tuple[DecisionTable, int]:
    """Every traced problem on the first of ``backends`` that computes all its passes."""
    trace = trace_convs(factory, shape, label=factory.__name__)
    entries, off = [], 0
    context = decision_context("cpu")
    for call in {c.problem.key: c for c in trace.recorded}.values():
        args = call.problem.args(torch.float32, torch.device("cpu"))
        name = next((b for b in backends if get_backend(b).reason(args, "train") is None), "torch")
        off += name != "torch"
        for p in PASSES:
            entries.append(
                {
                    "problem": call.problem.key,
                    "dtype": "float32",
                    "device": "cpu",
                    "pass": p,
                    "backend": name,
                    "context": context,
                }
            )
    return DecisionTable("<compile_check>", entries), off


def check(name: str, shape, backends) -> str:
    factory = getattr(models, name)
    table, off = decisions_off_torch(factory, shape, backends)
    torch.manual_seed(0)
    original = factory()
    tuned = optimize(copy.deepcopy(original), table, compile=False)
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(tuned, fullgraph=True, backend=counter)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    counters.clear()
    start = time.perf_counter()
    original.eval(), tuned.eval()
    with torch.no_grad():
        expected = original(x)
        for _ in range(3):
            got = compiled(x)
    diff = ((got - expected).abs().max() / expected.abs().max()).item()
    frames_inference = counter.frame_count
    tuned.train()
    optimizer = torch.optim.SGD(tuned.parameters(), lr=1e-4)
    for _ in range(3):
        optimizer.zero_grad()
        compiled(x).square().mean().backward()
        optimizer.step()
    nodes = sum(
        node.target is torch.ops.convbench.conv for g in counter.graphs for node in g.graph.nodes
    ) // max(1, len(counter.graphs))
    breaks = sum(counters["graph_break"].values())
    return (
        f"{name:14} frames: inference {frames_inference}, +training "
        f"{counter.frame_count - frames_inference}; graph breaks {breaks}; "
        f"convbench::conv nodes per graph {nodes} (layers off torch: {off} problems); "
        f"max rel. diff {diff:.1e}; {time.perf_counter() - start:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,resnet50,mobilenet_v2,convnext_tiny")
    parser.add_argument("--input-shape", default="2,3,64,64")
    parser.add_argument("--backends", default="winograd,im2col")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.input_shape.split(","))
    for name in args.models.split(","):
        print(check(name, shape, args.backends.split(",")), flush=True)


if __name__ == "__main__":
    main()
