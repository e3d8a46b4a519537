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


def test_the_order_does_not_depend_on_which_backend_module_was_imported_first():
    import subprocess
    import sys

    code = (
        "from convbench.backends import cudnn, pytorch\n"  # registers these before the rest
        "import convbench\n"
        "print(','.join(convbench.backend_names()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == ",".join(convbench.backend_names()), proc.stderr


def test_builtin_names_in_order():
    names = convbench.backend_names()
    assert names[:8] == [
        "naive",
        "im2col",
        "fft",
        "winograd",
        "torch",
        "onednn",
        "onednn_packed",
        "cudnn",
    ]


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
        from convbench.backends import Backend, Passes

        class Direct(Passes):
            def forward(self, x):
                a = self.args
                fn = F.conv1d if a.nd == 1 else F.conv2d
                return fn(x, self.weight, self.bias, a.stride, a.symmetric_padding,
                          a.dilation, a.groups)

        class Doubler(Backend):
            name = "torch_direct"
            description = "F.conv via a plugin"

            def plan(self, args, weight, bias):
                return Direct(args, weight, bias)
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
    assert out.stdout.strip().split(",")[:8] == [
        "naive",
        "im2col",
        "fft",
        "winograd",
        "torch",
        "onednn",
        "onednn_packed",
        "cudnn",
    ]
    assert "cudnn_tf32" in out.stdout and "cudnn_benchmark" in out.stdout
    assert "could not load backend entry point 'bad'" in out.stderr


def test_backend_call_is_conv():
    """Calling a backend is its convolution. naive sums in another order than oneDNN, so the
    two agree to float32's tolerance, not to `torch.allclose`'s default atol of 1e-8 (which
    an output near zero failed for some random inputs)."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 2, 5, generator=gen), torch.randn(3, 2, 2, generator=gen)
    torch.testing.assert_close(convbench.get_backend("naive")(x, w), F.conv1d(x, w))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_torch_and_onednn_run_one_kernel_through_the_same_python():
    """On a CPU with oneDNN on (PyTorch's default), `torch` and `onednn` dispatch to the same
    kernel: their timed calls must run the same Python, or a timing would crown one of them
    over the other for its wrapper (it once did: onednn switched oneDNN on, already on, at
    every call)."""
    import sys

    x, w, b = torch.randn(2, 8, 16, 16), torch.randn(16, 8, 3, 3), torch.randn(16)
    plans = {
        n: convbench.get_backend(n).prepare(w, b, padding=1, input=x) for n in ("torch", "onednn")
    }

    def python_calls(plan) -> list[str]:
        calls = []

        def profile(frame, event, arg):
            if event == "call":
                calls.append(frame.f_code.co_qualname)

        sys.setprofile(profile)
        try:
            plan.forward(x)
        finally:
            sys.setprofile(None)
        return calls

    assert python_calls(plans["torch"]) == python_calls(plans["onednn"])
    assert plans["torch"].prepared["dispatch"] == plans["onednn"].prepared["dispatch"] == "Mkldnn"
