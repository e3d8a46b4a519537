"""The worker's C allocator is in one state whatever ran before: the page faults of a
convolution that allocates a 25 MiB output, counted (not timed), in fresh processes."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

SCRIPT = """
import resource, sys
from convbench.measure.malloc import steady_state
if sys.argv[1] == "steady":
    print(steady_state(), file=sys.stderr)
import torch, torch.nn.functional as F
torch.set_num_threads(2)
x, w = torch.randn(8, 64, 56, 56), torch.randn(256, 64, 1, 1)
F.conv2d(x, w)
F.conv2d(x, w)
# The fewest of three batches: the allocator's faults come in every batch, while the
# kernel's own page migrations (compaction while other processes churn memory) fault a
# few pages in now and then, into any batch.
per_call = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        F.conv2d(x, w)
    per_call.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
print(min(per_call))
"""


def faults_per_call(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def test_fresh_glibc_faults_a_large_output_in_on_every_call():
    assert faults_per_call("fresh") > 5000  # 6,400 pages of 4 KiB, and more


def test_steady_state_keeps_it_in_the_heap():
    assert faults_per_call("steady") < 100


def test_the_worker_is_in_steady_state_and_says_so(warm_workers):
    """Any worker, warm or fresh: it set its allocator up before anything else."""
    from convbench.runner.worker import Worker

    worker = Worker(threads=1)
    try:
        env = worker.call(("env",), 120)
    finally:
        worker.stop()
    assert env["malloc"] == "glibc mmap_threshold=32MiB trim_threshold=64MiB"
