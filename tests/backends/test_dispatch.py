"""The kernel family a result records (``dispatch``): on cuDNN it carries the math mode and
the autotuner, which choose the kernel, so that TF32 and float32 results are not taken for one
kernel measured twice. Checked around the hardware: PyTorch's dispatch answer is given."""

from __future__ import annotations

import pytest
import torch

from convbench.backends import pytorch
from convbench.backends.dispatch import kernel_family
from convbench.problem.spec import ConvProblem


@pytest.mark.parametrize(
    "path, dtype, tf32, autotune, family",
    [
        ("Mkldnn", torch.float32, True, True, "Mkldnn"),  # only cuDNN's kernels are qualified
        ("Cudnn", torch.float32, False, False, "Cudnn"),
        ("Cudnn", torch.float32, True, False, "Cudnn (TF32)"),
        ("Cudnn", torch.float16, True, False, "Cudnn"),  # TF32 is a float32 math mode
        ("Cudnn", torch.float32, False, True, "Cudnn (autotuned)"),
        ("CudnnTranspose", torch.float32, True, True, "CudnnTranspose (TF32, autotuned)"),
    ],
)
def test_the_family_names_what_chooses_the_kernel(path, dtype, tf32, autotune, family):
    assert kernel_family(path, dtype, tf32=tf32, autotune=autotune) == family


@pytest.mark.parametrize("tf32, family", [(True, "Cudnn (TF32)"), (False, "Cudnn")])
def test_torch_on_cuda_records_the_math_mode_it_runs_with(monkeypatch, tf32, family):
    """PyTorch's default lets cuDNN use TF32 for float32: torch's rows say so."""
    monkeypatch.setattr(pytorch, "selected_path", lambda args: "Cudnn")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    problem = ConvProblem(batch=2, in_channels=4, out_channels=4, spatial=(8, 8), kernel=(3, 3))
    assert pytorch.dispatch_of(problem.args(torch.float32, "cuda")) == family
    assert pytorch.dispatch_of(problem.args(torch.float16, "cuda")) == "Cudnn"
