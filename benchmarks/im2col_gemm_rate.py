"""im2col's GEMM efficiency: its convolution time against a plain matmul of the same shape.

For each case of a suite (default: resnet50), im2col's convolution is one GEMM of
M = K/g output channels, N = batch × output positions, K = C/g × ∏kernel (per group) plus
building the column matrix. This times `plan(x)` and `A @ B` of that M, N, K with
`convbench.measure.engine.measure` (same clock, warmup and stopping rule as `convbench run`),
interleaved per case, and prints the ratio matmul time / im2col time: the share of the plain
GEMM rate im2col achieves (1.0 = the convolution costs no more than its GEMM).

    python benchmarks/im2col_gemm_rate.py [SUITE] [--threads N]
"""

from __future__ import annotations

import math

import torch
from bench_args import suite_args  # benchmarks/bench_args.py, beside this script

import convbench
from convbench.measure.engine import measure
from convbench.problem import load_suite


def main() -> None:
    args, config = suite_args(__doc__)
    backend = convbench.get_backend("im2col")
    ratios = []
    print(f"{'case':30s} {'im2col ms':>10s} {'matmul ms':>10s} {'GEMM rate':>9s}")
    with torch.no_grad():
        for case in load_suite(args.suite).cases:
            p = case.problem
            x, w, b = p.make_tensors(torch.float32)
            plan = backend.prepare(w, b, **p.conv_kwargs(), input=x)
            g = p.groups
            m = p.out_channels // g
            k = p.in_channels // g * math.prod(p.kernel)
            n = p.batch * math.prod(p.out_spatial)
            a = torch.randn(g, m, k)
            bmat = torch.randn(g, k, n)
            conv_ms = measure(lambda plan=plan, x=x: plan(x), config).median_ms
            gemm_ms = measure(lambda a=a, b=bmat: torch.matmul(a, b), config).median_ms
            ratios.append(gemm_ms / conv_ms)
            print(f"{case.name:30s} {conv_ms:10.3f} {gemm_ms:10.3f} {gemm_ms / conv_ms:9.0%}")
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print(
        f"geometric mean: im2col runs at {geo:.0%} of the plain GEMM rate "
        f"({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
