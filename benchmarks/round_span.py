"""How far the ratio of two fast kernels moves between back-to-back measurements, by the
number of interleaved rounds a measurement spans (`TimingConfig.min_rounds`).

For each 2-D and 1-D case of a suite (default: smoke), times ``torch`` against ``onednn`` on
one set of tensors ``--repeats`` times in a row with `measure_interleaved` (the engine
`convbench run` uses), at each of ``--rounds``; each time takes the median over rounds of
torch's round median over onednn's (`convbench.analysis.gate.round_ratio`), and prints the
standard deviation of its log over the repeats (×100: about the percent it moved) and the
interval's half-width the gate would give it. Nothing changed between the repeats, so the
deviation is what one measurement cannot tell apart from a change.

    python benchmarks/round_span.py [SUITE] [--threads N] [--repeats 8] [--rounds 3 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import torch

from convbench.analysis.gate import round_ratio
from convbench.backends import get_backend
from convbench.measure.config import TimingConfig
from convbench.measure.engine import measure_interleaved
from convbench.measure.passes import pass_run
from convbench.problem import load_suite

BACKENDS = ("torch", "onednn")


def _row(m) -> dict:
    return {
        "samples_ms": list(m.samples_ms),
        "rounds": list(m.rounds),
        "run_id": "r",
        "round_group": "g",
    }


def _repeats(case, config: TimingConfig, repeats: int) -> tuple[float, float]:
    """Standard deviation of the log ratio over ``repeats`` measurements, and the median
    half-width of its interval (log)."""
    p = case.problem
    x, w, b = p.make_tensors(torch.float32)
    runs = [pass_run(get_backend(n), "forward", x, w, b, None, p.conv_kwargs()) for n in BACKENDS]
    logs, halves = [], []
    for seed in range(repeats):
        with torch.no_grad():
            found = measure_interleaved([r.fn for r in runs], config, seed=seed)
        ratio, low, high = round_ratio(*(_row(m) for m in found))
        logs.append(math.log(ratio))
        halves.append(math.log(high / low) / 2)
    return float(np.std(logs, ddof=1)), float(np.nanmedian(halves))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", default="smoke")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--rounds", type=int, nargs="+", default=[3, 20])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'case':26s}" + "".join(f"{f'{r} rounds: sd / half':>24s}" for r in args.rounds))
    for case in load_suite(args.suite).cases:
        cells = []
        for rounds in args.rounds:
            config = dataclasses.replace(TimingConfig(), min_rounds=rounds)
            sd, half = _repeats(case, config, args.repeats)
            cells.append(f"{100 * sd:>14.2f}% / {100 * half:.2f}%")
        print(f"{case.name:26s}" + "".join(f"{c:>24s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
