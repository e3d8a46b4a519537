"""History and change points: PELT against brute force, and the injected steps of a
synthetic history found with precision and recall ≥ 0.9."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pandas as pd
import pytest

from convbench.analysis.history import change_points, history, pelt


def brute_force(values, penalty, min_size=2):
    n, best, found = len(values), math.inf, []
    x = np.asarray(values)
    for k in range(0, n):
        for points in itertools.combinations(range(min_size, n - min_size + 1), k):
            bounds = [0, *points, n]
            if any(b - a < min_size for a, b in zip(bounds, bounds[1:], strict=False)):
                continue
            pairs = zip(bounds, bounds[1:], strict=False)
            cost = sum(((x[a:b] - x[a:b].mean()) ** 2).sum() for a, b in pairs)
            cost += penalty * k
            if cost < best - 1e-12:
                best, found = cost, list(points)
    return found


@pytest.mark.parametrize("seed", range(25))
def test_pelt_is_exact(seed):
    rng = random.Random(seed)
    values = [rng.gauss(0, 1) + (3 if i >= 5 else 0) for i in range(rng.randint(4, 11))]
    penalty = rng.uniform(0.5, 6)
    assert pelt(values, penalty) == brute_force(values, penalty)


def series(medians, flagged=None, run0=0):
    n = len(medians)
    return pd.DataFrame({"run_id": [f"r{run0 + i:03d}" for i in range(n)],
                         "median_ms": medians, "flagged": flagged or [False] * n})  # fmt: skip


def test_injected_steps_are_found_with_precision_and_recall_above_0_9():
    """200 synthetic histories of 40 runs each (3% run-to-run noise, a 20% chance of a
    flagged median off by up to 40%), each with 0–2 steps of 8–30% at random runs: a step
    found within one run of where it was injected is a hit."""
    rng = random.Random(7)
    hits = false = missed = 0
    for _ in range(200):
        steps = sorted(rng.sample(range(6, 35), rng.randint(0, 2)))
        if len(steps) == 2 and steps[1] - steps[0] < 5:
            steps = steps[:1]
        level, medians, flagged = 10.0, [], []
        for i in range(40):
            if i in steps:
                level *= rng.choice([1, -1]) * rng.uniform(0.08, 0.30) + 1
            off = rng.random() < 0.2
            noise = rng.gauss(0, 0.03)
            medians.append(level * math.exp(noise) * (1 + rng.uniform(0.1, 0.4) * off))
            flagged.append(off)
        found = [int(c.run_id[1:]) for c in change_points(series(medians, flagged))]
        for step in steps:
            near = [f for f in found if abs(f - step) <= 1]
            hits += bool(near)
            missed += not near
        false += sum(1 for f in found if all(abs(f - s) > 1 for s in steps))
    precision, recall = hits / max(1, hits + false), hits / max(1, hits + missed)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall, hits, false, missed)


def test_a_flat_history_has_no_change_and_flagged_points_are_left_out():
    flat = series([10.0 * (1 + 0.01 * math.sin(i)) for i in range(20)])
    assert change_points(flat) == []
    medians = [10.0] * 10 + [10.0] * 10
    medians[12] = 20.0  # one flagged outlier is not a step
    flags = [False] * 20
    flags[12] = True
    assert change_points(series(medians, flags)) == []
    stepped = series([10.0] * 8 + [12.0] * 8)
    (change,) = change_points(stepped)
    assert change.run_id == "r008" and change.ratio == pytest.approx(1.2)


def test_history_lines_up_each_result_over_runs_per_host_and_threads():
    rows = []
    for i, run in enumerate(["b", "a", "c"]):
        for node in ("h1", "h2"):
            rows.append(dict(run_id=run, node=node, threads=2, case="c1", dtype="float32",
                             device="cpu", direction="forward", layout="contiguous",
                             backend="im2col", status="ok", median_ms=1.0 + i, disturbed=0,
                             reason=None))  # fmt: skip
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "created_at": [1.0, 2.0, 3.0]})
    h = history(pd.DataFrame(rows), runs)
    per_host = dict(iter(h.groupby("node")))
    assert list(per_host["h1"].run_id) == ["a", "b", "c"]  # by creation time
    assert list(per_host["h1"].median_ms) == [2.0, 1.0, 3.0]
    assert not h.flagged.any()
