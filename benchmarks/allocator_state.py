"""How much a model's eager forward depends on glibc malloc's state, in the process that runs it.

convbench's workers and tune's end-to-end rounds fix glibc's thresholds before anything is
allocated (`convbench.measure.malloc.steady_state`: mmap threshold 32 MiB, trim threshold
64 MiB). A fresh Python process that does not starts at glibc's defaults (128 KiB, rising
with the first large block freed): large activations are mapped per allocation, or given
back to the system when the heap trims its top, and their pages are faulted in again on
later forwards. This script times the example model's eager
forward in fresh processes, alternately at glibc's defaults and in the steady state, and
prints each process's median and the ratio of the medians.

    python benchmarks/allocator_state.py resnet50 [--batch 8] [--threads 2] [--processes 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def forward_ms(model_name: str, batch: int, threads: int, steady: bool, calls: int = 10) -> float:
    """The median eager forward of ``examples.models.<model_name>`` over ``calls`` calls,
    after three untimed ones, in this process."""
    if steady:
        from convbench.measure.malloc import steady_state

        steady_state()  # before torch allocates anything
    import torch

    sys.path.insert(0, str(ROOT))
    from examples import models

    torch.set_num_threads(threads)
    model = getattr(models, model_name)().eval()
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for i in range(3 + calls):
            start = time.perf_counter()
            model(x)
            if i >= 3:
                times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="per state, alternating")
    parser.add_argument("--child", choices=("default", "steady"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(forward_ms(args.model, args.batch, args.threads, args.child == "steady"))
        return
    found: dict[str, list[float]] = {"default": [], "steady": []}
    for _ in range(args.processes):
        for state in found:
            cmd = [sys.executable, __file__, args.model, "--batch", str(args.batch)]
            cmd += ["--threads", str(args.threads), "--child", state]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            found[state].append(float(out.split()[-1]))
            print(f"{args.model} {state:8s} {found[state][-1]:8.1f} ms", flush=True)
    default, steady = (statistics.median(v) for v in found.values())
    print(f"glibc defaults / steady state: {default / steady:.2f}× (medians of the processes)")


if __name__ == "__main__":
    main()
