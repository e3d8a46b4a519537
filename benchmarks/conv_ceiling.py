"""How much any choice of convolution algorithm can speed a model up: the share of its eager
inference time spent inside its convolutions, measured by the torch profiler, and the
ceilings that share sets (Amdahl).

For the model as written (contiguous input) and in channels_last (model and input converted),
in interleaved rounds, the profiler times each model call and each convolution module's
forward inside it (a ``record_function`` range entered by a forward pre-hook, left by a
forward hook). It prints per variant:

* the model's time and its convolutions' time inside it;
* **free**: the model's time over its time without the convolutions — the speedup if every
  convolution took no time at all (no plan can reach it);
* **at the GEMM rate**: the convolutions replaced by their direct FLOPs (2 per
  multiply-accumulate, `ConvProblem.flops`) at the rate of a large float32 matrix product
  measured in the same rounds — what a convolution that runs as fast as the machine's best
  GEMM would give. Winograd and FFT do fewer multiplications than direct FLOPs on the layers
  they apply to, so for models whose time is in 3×3 or large kernels it is not a hard bound;
  for 1×1, stride-2 2×2 and depthwise convolutions it is.

    python benchmarks/conv_ceiling.py examples.models:convnext_tiny \\
        --input-shape 8,3,224,224 [--threads 2] [--rounds 10]
"""

from __future__ import annotations

import copy
import statistics
from collections import defaultdict

import torch
from bench_args import model_args  # benchmarks/bench_args.py, beside this script
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from convbench.problem.trace import describe_call, layer_names

CONV = "convbench.conv"
GEMM_N = 1024


def ranged(model: torch.nn.Module, variant: str, now: dict) -> list:
    """Each convolution module's forward of ``model`` inside a profiler range named after
    ``variant`` and the round (``now["round"]``, set as the rounds go), and the problem of
    each call of the first forward (appended as it runs)."""
    problems: list = []
    for module, path in layer_names(model).items():
        state: dict = {}

        def enter(mod, args, path=path, state=state):
            if now["round"] < 0:
                problems.append(describe_call(path, mod, tuple(args[0].shape)).problem)
            state["range"] = record_function(f"{CONV}:{variant}:{now['round']}")
            state["range"].__enter__()

        def leave(mod, args, out, state=state):
            state.pop("range").__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)
    return problems


def measured(variants: dict, rounds: int, now: dict) -> tuple[dict, float]:
    """Per variant (name → (model, input)): the medians over rounds of the model call's and
    of its convolutions' milliseconds; and the GEMM rate in FLOP/s (the median of one
    product a round)."""
    a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    with torch.no_grad():
        for model, x in variants.values():  # round -1: the problems, and a warm-up
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for r in range(rounds):
                now["round"] = r
                for name, (model, x) in variants.items():
                    with record_function(f"model:{name}:{r}"):
                        model(x)
                with record_function(f"gemm:-:{r}"):
                    a @ b
    ms: dict = defaultdict(lambda: defaultdict(float))  # (kind, variant) → round → ms
    for event in prof.events():
        kind, _, rest = event.name.partition(":")
        if kind in ("model", "gemm", CONV):
            name, r = rest.rsplit(":", 1)
            ms[(kind, name)][r] += event.cpu_time_total / 1e3
    found = {
        name: tuple(statistics.median(ms[(k, name)].values()) for k in ("model", CONV))
        for name in variants
    }
    return found, 2 * GEMM_N**3 / (statistics.median(ms[("gemm", "-")].values()) / 1e3)


def main() -> None:
    args, original, x = model_args(__doc__, rounds=10)
    nhwc = torch.channels_last
    variants = {
        "as written": (original, x),
        "channels_last": (copy.deepcopy(original).to(memory_format=nhwc), x.to(memory_format=nhwc)),
    }
    now = {"round": -1}
    problems = {name: ranged(model, name, now) for name, (model, _) in variants.items()}
    found, rate = measured(variants, args.rounds, now)
    print(f"GEMM rate: {rate / 1e9:.1f} GFLOP/s ({GEMM_N}² float32 product, same rounds)")
    print(f"{'variant':14s} {'model':>9s} {'convs':>9s} {'share':>6s} {'free':>6s} {'at GEMM':>8s}"
          "  [ms; medians of the rounds]")  # fmt: skip
    for name, (model_ms, conv_ms) in found.items():
        floor_ms = sum(p.flops for p in problems[name] if p is not None) / rate * 1e3
        free = model_ms / (model_ms - conv_ms)
        at_gemm = model_ms / (model_ms - conv_ms + min(floor_ms, conv_ms))
        print(f"{name:14s} {model_ms:9.2f} {conv_ms:9.2f} {conv_ms / model_ms:6.1%} "
              f"{free:6.3f} {at_gemm:8.3f}")  # fmt: skip
    print("free: the speedup if the convolutions took no time; at GEMM: if each ran its direct "
          "FLOPs at the GEMM rate")  # fmt: skip


if __name__ == "__main__":
    main()
