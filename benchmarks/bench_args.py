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
