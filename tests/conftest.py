"""Shared test configuration and builders: the CUDA skip, the Hypothesis profile, tiny
suites, a test-only backend plugin, the CLI in a subprocess, and synthetic result rows."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

# One fixed profile, so a failing example reproduces on the next run and in CI: derandomized
# (the examples are a function of the test alone) and no example database between runs.
settings.register_profile("convbench", derandomize=True, database=None, deadline=None)
settings.load_profile("convbench")


def pytest_configure(config):
    """Ctrl-C as a terminal delivers it. A shell that starts the tests in the background
    (``cmd &``, ``nohup``) hands the process SIGINT ignored, and Python then keeps ignoring it
    — as does every process started from it: the tests of Ctrl-C handling need the
    interpreter's own handler, which a child's exec resets to the default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# -- suites and the CLI ----------------------------------------------------------------------
TINY_SUITE = """
[suite]
name = "tiny"
description = "two tiny cases for CLI tests"

[axes]
dtypes = ["float32"]
devices = ["cpu"]
directions = ["forward", "backward"]
backends = ["naive", "im2col", "onednn", "cudnn"]

[[case]]
name = "c2d"
batch = 2
in_channels = 4
out_channels = 4
spatial = [8, 8]
kernel = [3, 3]
padding = 1

[[case]]
name = "c1d"
batch = 2
in_channels = 4
out_channels = 6
spatial = [32]
kernel = 5
padding = "same"
dilation = 2
"""

# the re-measure pass is tested with a scripted worker (tests/runner/test_remeasure.py)
FAST = ["--max-time", "0.05", "--warmup", "0.01", "--min-samples", "6", "--quiet", "--no-remeasure"]


PLUGIN = '''
import os, time
import torch.nn.functional as F
from convbench.backends import Backend, Passes


class _Forward(Passes):
    def __init__(self, args, weight, bias, run):
        super().__init__(args, weight, bias)
        self.run = run

    def forward(self, x):
        return self.run(x)


class _Base(Backend):
    def plan(self, args, weight, bias):
        fn = F.conv1d if args.nd == 1 else F.conv2d
        pads = args.symmetric_padding
        run = self.wrap(lambda x: fn(x, weight, bias, args.stride, pads, args.dilation,
                                     args.groups))
        return _Forward(args, weight, bias, run)


class Sleepy(_Base):
    name = "sleepy"
    def wrap(self, f):
        def run(x):
            time.sleep(3600)
        return run


class Crashy(_Base):
    name = "crashy"
    def wrap(self, f):
        def run(x):
            os._exit(7)
        return run


class Buggy(_Base):
    name = "buggy"
    def wrap(self, f):
        def run(x):
            raise RuntimeError("deliberate bug in buggy backend")
        return run


class Flaky(_Base):
    """Kills its worker process the first time it runs (per marker file), then works."""
    name = "flaky"
    def wrap(self, f):
        def run(x):
            marker = os.environ["FLAKY_MARKER"]
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(9)
            return f(x)
        return run


class Wrong(_Base):
    """Fast and wrong by 1%: what the accuracy gate of `convbench tune` must refuse."""
    name = "wrong"
    def wrap(self, f):
        def run(x):
            return f(x) * 1.01
        return run


def _extra_s():
    """SLOWED_EXTRA_S, else the number in slowed_extra_s beside this file (read at each call,
    so that one worker serves runs with different waits), else 2 ms."""
    if "SLOWED_EXTRA_S" in os.environ:
        return float(os.environ["SLOWED_EXTRA_S"])
    try:
        with open(os.path.join(os.path.dirname(__file__), "slowed_extra_s")) as f:
            return float(f.read())
    except FileNotFoundError:
        return 0.002


class Slowed(_Base):
    """F.conv made slower by a busy wait (`_extra_s`): for regression-gate tests."""
    name = "slowed"
    def wrap(self, f):
        def run(x):
            end = time.perf_counter() + _extra_s()
            while time.perf_counter() < end:
                pass
            return f(x)
        return run
'''


@pytest.fixture(scope="session")
def tiny_suite_text() -> str:
    return TINY_SUITE


@pytest.fixture
def tiny_suite(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE)
    return path


@pytest.fixture(scope="session")
def fast() -> list[str]:
    """`convbench run` flags that keep a sweep short."""
    return list(FAST)


@pytest.fixture(scope="session")
def plugin_source() -> str:
    return PLUGIN


def make_plugin_env(
    root: Path, names=("sleepy", "crashy", "buggy", "slowed", "flaky", "wrong")
) -> dict:
    """An environment in which the test-only backends ``names`` are registered through the
    entry-point group (a real dist-info on PYTHONPATH)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cbtest_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = root / "cbtest_plugin-1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cbtest-plugin\nVersion: 1.0\n")
    classes = {n: n.capitalize() for n in names}
    (dist / "entry_points.txt").write_text(
        "[convbench.backends]\n" + "".join(f"{n} = cbtest_plugin:{c}\n" for n, c in classes.items())
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    env["FLAKY_MARKER"] = str(root.parent / "flaky.marker")
    return env


@pytest.fixture(scope="session")
def plugin_env_factory():
    """`make_plugin_env`, for module-scoped fixtures."""
    return make_plugin_env


@contextlib.contextmanager
def plugins_in_process(
    root: Path, names=("sleepy", "crashy", "buggy", "slowed", "flaky", "wrong"), **env: str
):
    """The test-only backends ``names`` registered through the entry-point group in *this*
    process (so `convbench.cli.main` and `convbench.run` know them) and in the workers it
    spawns (they inherit the environment: PYTHONPATH, FLAKY_MARKER and ``env``). The same
    dist-info as `make_plugin_env`; everything is undone on exit. For tests of what a sweep
    does with a failing backend, where a `convbench` subprocess would only add its start-up."""
    import convbench.backends as registry

    plugin = make_plugin_env(root, names)
    registry.backend_names()  # the built-ins, loaded once for the whole session
    with pytest.MonkeyPatch.context() as mp:
        for key in ("PYTHONPATH", "FLAKY_MARKER"):
            mp.setenv(key, plugin[key])
        for key, value in env.items():
            mp.setenv(key, value)
        mp.syspath_prepend(str(root))
        mp.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        mp.setattr(registry, "_loaded", False)  # the next look-up reads the entry points again
        try:
            registry.backend_names()
            yield plugin
        finally:
            sys.modules.pop("cbtest_plugin", None)


class WorkerPool:
    """Warm measuring processes, shared by the tests that opt in (`warm_workers`).

    A run in this process starts a `convbench.runner.worker.Worker` (a spawned interpreter
    that imports torch: seconds), and stops it at the end (a second). Where the worker's
    process is not what a test is about, `patched` hands out a real worker from here instead
    and takes it back when the run stops it, to serve the next run started in the same
    conditions: the same thread count and environment (what a spawned worker inherits; the
    test-only backends come in through PYTHONPATH, `plugins_in_process`); it measures the
    roofline's ceilings once. A worker killed by a run (a timeout,
    a crash) restarts as it always does. Tests of the worker itself (start-up, Ctrl-C, kill,
    a fresh allocator) and of the ceilings do not opt in."""

    def __init__(self, keep: int = 3):
        from convbench.runner.worker import Worker

        self.real, self.keep = Worker, keep
        self.idle: list[tuple[tuple, object]] = []  # (conditions, worker), oldest first

    #: Variables that change under the session without changing what a worker does: pytest's
    #: current test, and the default cache directory torch sets on first use of inductor.
    INCIDENTAL = frozenset({"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR"})

    @classmethod
    def _conditions(cls, threads) -> tuple:
        env = sorted((k, v) for k, v in os.environ.items() if k not in cls.INCIDENTAL)
        return threads, tuple(env)

    def worker(self, threads=None):
        key = self._conditions(threads)
        for i, (k, w) in enumerate(self.idle):
            if k == key:
                del self.idle[i]
                return w
        w = self.real(threads)
        w.stop = lambda: self._give_back(key, w)  # a run stops it: back to the pool
        call, ceilings = w.call, {}

        def measure_ceilings_once(message, timeout_s):
            """The roofline's ceilings (a GEMM's GFLOP/s, a copy's bandwidth), which every
            new run measures, are measured once per worker: the same machine's."""
            if message[0] not in ("peak", "bandwidth"):
                return call(message, timeout_s)
            if message not in ceilings:
                ceilings[message] = call(message, timeout_s)
            return ceilings[message]

        w.call = measure_ceilings_once
        return w

    def _give_back(self, key, w) -> None:
        if any(w is idle for _, idle in self.idle):
            return  # stopped again (a caller stopping what it was lent): once is enough
        self.idle.append((key, w))
        while len(self.idle) > self.keep:
            self.real.stop(self.idle.pop(0)[1])

    @contextlib.contextmanager
    def patched(self):
        """Runs started in this block (`convbench.cli.main`, `convbench.run`, `execute`,
        `sweep`, interference's passes) get their workers from the pool."""
        from convbench.runner import session, sweep, worker

        with pytest.MonkeyPatch.context() as mp:
            for module in (session, sweep, worker):
                mp.setattr(module, "Worker", self.worker)
            yield self

    def close(self) -> None:
        while self.idle:
            self.real.stop(self.idle.pop()[1])


@pytest.fixture(scope="session")
def worker_pool():
    """The session's `WorkerPool` (its workers stop when the session ends)."""
    pool = WorkerPool()
    yield pool
    pool.close()


@pytest.fixture
def warm_workers(worker_pool):
    """This test's runs measure on warm workers from the session's `WorkerPool`."""
    with worker_pool.patched() as pool:
        yield pool


@pytest.fixture(scope="session")
def plugins_factory():
    """`plugins_in_process`, for module-scoped fixtures and tests that need it for a part."""
    return plugins_in_process


@pytest.fixture(scope="session")
def plugin_root(tmp_path_factory) -> Path:
    """Where `plugins` puts the test-only backends: one place for the session, so that the
    tests using it run in the same environment (and can share a warm worker)."""
    return tmp_path_factory.mktemp("plugins") / "plugin"


@pytest.fixture
def plugins(plugin_root):
    """`plugins_in_process` for one test: the test-only backends known in this process."""
    with plugins_in_process(plugin_root) as env:
        yield env


@pytest.fixture
def plugin_env(tmp_path) -> dict:
    """Environment with the test-only backends registered through the entry-point group."""
    return make_plugin_env(tmp_path / "plugin")


def _run_cli(args, env=None, timeout=600, **kw):
    return subprocess.run(
        [sys.executable, "-m", "convbench", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        **kw,
    )


@pytest.fixture(scope="session")
def run_cli():
    """Run ``python -m convbench ARGS`` in a subprocess; returns the CompletedProcess."""
    return _run_cli


# -- synthetic results -------------------------------------------------------------------------
PROBLEM = {
    "batch": 2,
    "in_channels": 4,
    "out_channels": 8,
    "spatial": [8, 8],
    "kernel": [3, 3],
    "stride": [1, 1],
    "padding": [1, 1],
    "dilation": [1, 1],
    "groups": 1,
    "bias": True,
}
# forward FLOPs of PROBLEM: 2 * N * K * out(8*8) * C * 3*3
FLOPS = 2 * 2 * 8 * 64 * 4 * 9


def timing_samples(median: float, n: int = 40, spread: float = 0.02, seed: int = 0) -> list:
    """Right-skewed timing-like samples around ``median`` (ms)."""
    rng = np.random.default_rng(seed)
    return list(median * np.exp(rng.normal(0.0, spread, n)))


def result_row(
    case="c1",
    backend="naive",
    median=1.0,
    *,
    n=40,
    spread=0.02,
    seed=None,
    rel_err=1e-7,
    dtype="float32",
    device="cpu",
    direction="forward",
    run_id="r1",
    status="ok",
    with_samples=True,
) -> dict:
    """One result row as `convbench.results.load(samples=True)` gives it, with samples drawn
    around ``median``; the default seed is a stable function of the row's keys."""
    if seed is None:
        seed = zlib.crc32(f"{case}/{backend}/{direction}/{run_id}".encode())
    s = timing_samples(median, n, spread, seed) if status == "ok" else []
    ci = (float(np.quantile(s, 0.3)), float(np.quantile(s, 0.7))) if s else (math.nan, math.nan)
    return {
        "run_id": run_id,
        "result_key": f"{case}/{backend}/{dtype}/{device}/{direction}",
        "case": case,
        "backend": backend,
        "dtype": dtype,
        "device": device,
        "direction": direction,
        "status": status,
        "reason": None if status == "ok" else "not supported",
        "median_ms": float(np.median(s)) if s else math.nan,
        "ci_low_ms": ci[0],
        "ci_high_ms": ci[1],
        "rel_err": rel_err if status == "ok" else math.nan,
        "gflops": FLOPS / (float(np.median(s)) * 1e-3) / 1e9 if s else math.nan,
        "flops": float(FLOPS),
        "problem_json": json.dumps(PROBLEM),
        "samples_ms": s if with_samples else None,
    }


@pytest.fixture(scope="session")
def row():
    """`result_row`: a synthetic result row builder."""
    return result_row


@pytest.fixture(scope="session")
def synthetic_problem():
    """(problem dict, its forward FLOPs) behind every `row`."""
    return PROBLEM, FLOPS


def _rounds_data(shift_b: float, seed: int = 0):
    """a and b interleaved over 10 rounds; even rounds run the whole machine 1.5x slower,
    and a happened to take most of its samples in the slow rounds."""
    import random

    rng = random.Random(seed)
    a, ra, b, rb = [], [], [], []
    for r in range(10):
        pace = 1.5 if r % 2 == 0 else 1.0
        for _ in range(30 if r % 2 == 0 else 5):
            a.append(pace * rng.uniform(0.99, 1.01))
            ra.append(r)
        for _ in range(5 if r % 2 == 0 else 30):
            b.append(pace * shift_b * rng.uniform(0.99, 1.01))
            rb.append(r)
    return a, b, ra, rb


@pytest.fixture
def rounds_data():
    """Samples of two functions measured in interleaved rounds through drift (see
    `_rounds_data`): ``rounds_data(shift_b)`` -> a, b, rounds of a, rounds of b."""
    return _rounds_data


# -- decisions -------------------------------------------------------------------------------
def _im2col_decision(layers=("conv1@0",)):
    """One decision off torch that a model would keep: im2col for the forward of a 3→4 3×3
    convolution on a 2×3×8×8 input (``nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), …)``)."""
    from convbench.measure.envinfo import decision_context
    from convbench.problem.spec import ConvProblem
    from convbench.store.decisions import DecisionTable

    problem = ConvProblem(batch=2, in_channels=3, out_channels=4, spatial=(8, 8), kernel=(3, 3),
                          padding=(1, 1))  # fmt: skip
    entry = dict(problem=problem.key, dtype="float32", device="cpu", backend="im2col")
    entry.update({"pass": "forward", "options": {}, "reason": "won", "layers": list(layers)})
    entry["context"] = decision_context("cpu")
    return DecisionTable("<t>", [entry])


@pytest.fixture(scope="session")
def im2col_decision():
    return _im2col_decision
