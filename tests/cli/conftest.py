import os
import sys
import textwrap
from pathlib import Path

import pytest

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

FAST = ["--max-time", "0.05", "--warmup", "0.01", "--min-samples", "6", "--quiet"]


@pytest.fixture
def tiny_suite(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE)
    return path


PLUGIN = '''
import os, time
import torch.nn.functional as F
from convbench.backends import Backend


class _Base(Backend):
    def plan(self, args, weight, bias):
        fn = F.conv1d if args.nd == 1 else F.conv2d
        pads = args.symmetric_padding
        return self.wrap(lambda x: fn(x, weight, bias, args.stride, pads, args.dilation,
                                      args.groups)), {}


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


class Slowed(_Base):
    """F.conv made slower by a busy wait: for regression-gate tests."""
    name = "slowed"
    def wrap(self, f):
        def run(x):
            end = time.perf_counter() + float(os.environ.get("SLOWED_EXTRA_S", "0.002"))
            while time.perf_counter() < end:
                pass
            return f(x)
        return run
'''


@pytest.fixture
def plugin_env(tmp_path, monkeypatch):
    """Environment with test-only backends registered through the entry-point group."""
    root = tmp_path / "plugin"
    root.mkdir()
    (root / "cbtest_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = root / "cbtest_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cbtest-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[convbench.backends]\n"
        "sleepy = cbtest_plugin:Sleepy\ncrashy = cbtest_plugin:Crashy\n"
        "buggy = cbtest_plugin:Buggy\nslowed = cbtest_plugin:Slowed\n"
        "flaky = cbtest_plugin:Flaky\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    env["FLAKY_MARKER"] = str(tmp_path / "flaky.marker")
    return env


def run_cli(args, env=None, timeout=600, **kw):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "convbench", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        **kw,
    )
