"""Deterministic, balanced shards of a sweep, for job arrays (Slurm, Kubernetes indexed jobs).

Every task of one case (all its backends, dtypes, devices, directions) lands in the same shard,
so a shard's results compare within themselves. Cases are dealt out by longest-processing-
time-first over an estimated cost (direct-convolution FLOPs × tasks per case, a proxy that
tracks run time well enough), ties broken by the stable case id: the same suite and filters
give the same shards on every machine, and `convbench merge` of all N shards holds exactly the
rows of an unsharded run.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from convbench.errors import UserError
from convbench.problem.suite import Task


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` with 1 ≤ K ≤ N → (K, N)."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise UserError(f"--shard: expected K/N (e.g. 2/8), got {text!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise UserError(f"--shard: need 1 <= K <= N, got {text!r}")
    return k, n


def shard_tasks(tasks: Sequence[Task], k: int, n: int) -> list[Task]:
    """The tasks of shard ``k`` of ``n`` (1-based), in their original order."""
    by_case: dict[str, list[Task]] = {}
    for task in tasks:
        by_case.setdefault(task.case.case_id, []).append(task)
    cost = {cid: ts[0].problem.flops * len(ts) for cid, ts in by_case.items()}
    order = sorted(by_case, key=lambda cid: (-cost[cid], cid))
    heap = [(0, i) for i in range(n)]  # (load, shard index)
    owner: dict[str, int] = {}
    for cid in order:
        load, index = heapq.heappop(heap)
        owner[cid] = index
        heapq.heappush(heap, (load + cost[cid], index))
    return [t for t in tasks if owner[t.case.case_id] == k - 1]
