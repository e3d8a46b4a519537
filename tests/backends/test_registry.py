"""The registry: names, lookup errors, and third-party backends through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import convbench
from convbench.errors import UnknownBackend, UserError


def test_builtin_names_in_order():
    names = convbench.backend_names()
    assert names[:7] == ["naive", "im2col", "fft", "winograd", "torch", "onednn", "cudnn"]


def test_unknown_backend_lists_known_names():
    with pytest.raises(UnknownBackend) as info:
        convbench.get_backend("strassen")
    message = str(info.value)
    assert "unknown backend 'strassen'" in message
    for name in ("naive", "im2col", "fft", "winograd", "torch", "onednn", "cudnn"):
        assert name in message
    assert isinstance(info.value, UserError)


def test_entry_point_backend_is_registered(tmp_path):
    """A package that declares an entry point in group `convbench.backends` is picked up."""
    pkg = tmp_path / "mybackend.py"
    pkg.write_text(
        textwrap.dedent("""
        import torch.nn.functional as F
        from convbench.backends import Backend

        class Doubler(Backend):
            name = "torch_direct"
            description = "F.conv via a plugin"

            def plan(self, args, weight, bias):
                fn = F.conv1d if args.nd == 1 else F.conv2d
                pads = args.symmetric_padding
                return (lambda x: fn(x, weight, bias, args.stride, pads, args.dilation,
                                     args.groups)), {}
    """)
    )
    dist = tmp_path / "mybackend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mybackend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[convbench.backends]\ntorch_direct = mybackend:Doubler\n"
    )
    code = textwrap.dedent("""
        import torch, torch.nn.functional as F, convbench
        names = convbench.backend_names()
        assert names[-1] == "torch_direct", names
        x = torch.randn(2, 3, 8, 8); w = torch.randn(4, 3, 3, 3)
        y = convbench.get_backend("torch_direct").conv(x, w, padding=1)
        assert torch.allclose(y, F.conv2d(x, w, padding=1))
        print("ok")
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_broken_entry_point_does_not_break_builtins(tmp_path):
    dist = tmp_path / "broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[convbench.backends]\nbad = nosuchmodule:X\n")
    code = "import convbench; print(','.join(convbench.backend_names()))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split(",")[:7] == [
        "naive",
        "im2col",
        "fft",
        "winograd",
        "torch",
        "onednn",
        "cudnn",
    ]
    assert "cudnn_tf32" in out.stdout and "cudnn_benchmark" in out.stdout
    assert "could not load backend entry point 'bad'" in out.stderr


def test_backend_call_is_conv():
    x, w = torch.randn(1, 2, 5), torch.randn(3, 2, 2)
    assert torch.allclose(convbench.get_backend("naive")(x, w), F.conv1d(x, w))
