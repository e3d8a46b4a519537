"""What the benchmark scripts share: their command line (a suite, ``--threads``,
``--max-time``) and the timing settings it makes."""

from __future__ import annotations

import argparse

import torch

from convbench.measure.config import TimingConfig


def suite_args(doc: str) -> tuple[argparse.Namespace, TimingConfig]:
    """Parse ``[SUITE] [--threads N] [--max-time S]`` (the script's ``doc`` as description),
    set torch's threads, and return the arguments with the timing settings."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("suite", nargs="?", default="resnet50")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--max-time", type=float, default=1.0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, TimingConfig(warmup_s=0.1, max_time_s=args.max_time)


def model_args(doc: str, *positionals: str, rounds: int = 5):
    """Parse ``MODEL [POSITIONALS…] --input-shape N,C,H,W [--threads N] [--rounds R]`` (the
    script's ``doc`` as description), fix the allocator's state as convbench's workers and
    tune's end-to-end rounds keep it, set torch's threads, and return the arguments, the
    model (``PACKAGE.MODULE:FACTORY`` from the working directory, in eval mode) and a
    seeded input of that shape."""
    import os
    import sys

    from convbench.measure.malloc import steady_state
    from convbench.problem.trace import load_factory

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("model", help="PACKAGE.MODULE:FACTORY")
    for name in positionals:
        parser.add_argument(name)
    parser.add_argument("--input-shape", required=True)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--rounds", type=int, default=rounds)
    args = parser.parse_args()
    steady_state()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, os.getcwd())
    shape = [int(v) for v in args.input_shape.split(",")]
    model = load_factory(args.model)().eval()
    return args, model, torch.randn(shape, generator=torch.Generator().manual_seed(0))
