"""The gate's test backends: torch slowed by a fixed fraction of its own time, measured in
interleaved rounds beside torch within ±2% of the asked fraction; left out of every suite
that does not name them; refusing what they do not do."""

from __future__ import annotations

import math
import statistics
import time

import pytest
import torch

import convbench
from convbench.backends import backend_names, get_backend
from convbench.backends.slowed import SLOWED
from convbench.problem.files import load_suite
from convbench.problem.spec import ConvArgs
from convbench.problem.suite import SuiteError


def smoke_tasks(backends, case="conv2d_3x3_pad1"):
    """The smoke suite's forward tasks of ``case`` on ``backends``."""
    suite = load_suite("smoke")
    tasks = suite.tasks(
        backends=backends,
        directions=["forward"],
        registered=backend_names(),
        unlisted=backend_names(unlisted=True),
    )
    return [t for t in tasks if t.case.name == case]


def test_they_run_only_where_named():
    assert not set(SLOWED.values()) & set(convbench.backend_names())
    assert set(SLOWED.values()) <= set(backend_names(unlisted=True))
    assert {t.backend for t in load_suite("smoke").tasks(registered=backend_names())}.isdisjoint(
        SLOWED.values()
    )
    assert [t.backend for t in smoke_tasks(["torch", "torch_slowed10"])] == [
        "torch",
        "torch_slowed10",
    ]
    with pytest.raises(SuiteError, match="unknown backend 'torch_slowed10'"):
        load_suite("smoke").tasks(backends=["torch_slowed10"], registered=backend_names())


def test_forward_on_the_cpu_only_with_the_reason():
    backend = get_backend("torch_slowed10")
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    args = ConvArgs.from_call(x, w, None, 1, 1, 1, 1)
    assert backend.reason(args) is None
    assert "forward only" in backend.reason(args, "backward_data")
    torch.testing.assert_close(backend.conv(x, w, padding=1), torch.conv2d(x, w, padding=1))


@pytest.mark.parametrize("percent", sorted(SLOWED))
def test_the_slowdown_is_the_asked_fraction_within_two_percent(percent):
    """torch and the slowed backend called in turn, one call each, 300 times: the per-pair
    time ratio is 1 + the fraction ± 0.02. Alternating single calls puts a busy neighbour on
    both sides of a pair alike, as interleaved rounds do for a run; and the order flips every
    pair, because on this host the second call of a pair runs up to 3% apart from the first,
    in either direction (torch beside onednn: 0.986 one way, 1.017 the other) — a position
    effect that would otherwise be read as part of the slowdown. The two orders' median
    ratios are combined by their geometric mean, which cancels it."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a run pins it: no idle pool threads to wake on one side
    x, w, b = torch.randn(2, 32, 32, 32), torch.randn(32, 32, 3, 3), torch.randn(32)
    names = ("torch", SLOWED[percent])
    plans = {n: get_backend(n).prepare(w, b, padding=1, input=x) for n in names}
    clock = time.perf_counter
    ratios: dict[bool, list[float]] = {True: [], False: []}  # torch called first?
    try:
        for i in range(320):
            first = i % 2 == 0
            took = {}
            for name in names if first else reversed(names):
                start = clock()
                plans[name](x)
                took[name] = clock() - start
            if i >= 20:  # the first pairs warm both up
                ratios[first].append(took[names[1]] / took[names[0]])
    finally:
        torch.set_num_threads(threads)
    ratio = math.sqrt(statistics.median(ratios[True]) * statistics.median(ratios[False]))
    assert ratio - 1 == pytest.approx(percent / 100, abs=0.02)
