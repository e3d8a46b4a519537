"""onednn_packed: Inductor's frozen-weight oneDNN convolution, against F.conv2d in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convbench
from convbench import ConvProblem, Unsupported

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="needs a PyTorch build with oneDNN"
)

BACKEND = convbench.get_backend("onednn_packed")

PROBLEMS = {
    "3x3-pad1": ConvProblem(2, 16, 24, (12, 11), (3, 3), padding=1),
    # Batch 16: PyTorch sends a 1x1 with a small batch to oneDNN only when multi-threaded.
    "1x1": ConvProblem(16, 16, 8, (7, 9), (1, 1)),
    "stride2": ConvProblem(2, 8, 16, (13, 12), (3, 3), stride=2, padding=1),
    "depthwise": ConvProblem(2, 16, 16, (10, 10), (3, 3), padding=1, groups=16),
    "groups2": ConvProblem(2, 8, 12, (9, 8), (3, 3), padding=1, groups=2),
    "dilation2": ConvProblem(2, 8, 8, (13, 12), (3, 3), padding=2, dilation=2),
    "no-bias": ConvProblem(2, 8, 16, (9, 9), (3, 3), padding=1, bias=False),
    # Batch 1: PyTorch sends it to oneDNN only above 20480 input elements (or with groups).
    "batch1": ConvProblem(1, 32, 32, (28, 28), (3, 3), padding=1),
    "batch1-depthwise": ConvProblem(1, 16, 16, (9, 9), (3, 3), padding=1, groups=16),
    "same-even": ConvProblem(2, 8, 8, (9, 10), (2, 4), padding="same"),
}


def _tensors(problem: ConvProblem, layout):
    x, w, b = problem.make_tensors(torch.float32, seed=1)
    return x.contiguous(memory_format=layout), w, b


def _reference(problem: ConvProblem, x, w, b):
    b64 = None if b is None else b.double()
    return F.conv2d(x.double(), w.double(), b64, **problem.conv_kwargs())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("case", list(PROBLEMS))
def test_forward_matches_conv2d(case, layout):
    problem = PROBLEMS[case]
    x, w, b = _tensors(problem, layout)
    assert BACKEND.supports(x, w, b, **problem.conv_kwargs()) is None
    plan = BACKEND.prepare(w, b, **problem.conv_kwargs(), input=x)
    y = plan.forward(x)
    ref = _reference(problem, x, w, b)
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert (y.double() - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


def test_weight_is_packed_once_and_reused():
    problem = PROBLEMS["3x3-pad1"]
    x, w, b = _tensors(problem, torch.channels_last)
    plan = BACKEND.prepare(w, b, **problem.conv_kwargs(), input=x)
    packed = plan.prepared["weight"]
    assert packed.is_mkldnn  # oneDNN's opaque blocked format, not the plain weight
    assert torch.equal(packed.to_dense(), w)
    first, second = plan.forward(x), plan.forward(x)
    assert plan.prepared["weight"] is packed
    assert torch.equal(first, second)
    assert plan.prepared["dispatch"] == "Mkldnn" and plan.prepared["packed"] is True
    # A new weight is packed again (what `refresh` does after an optimizer step).
    plan.refresh(2 * w, b)
    assert plan.prepared["weight"] is not packed
    ref = _reference(problem, x, 2 * w, b)
    assert (plan.forward(x).double() - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


@pytest.mark.parametrize("direction", ["backward_data", "backward_weight", "backward", "train"])
def test_training_directions_are_refused(direction):
    args = PROBLEMS["3x3-pad1"].args(torch.float32)
    reason = BACKEND.reason(args, direction)
    assert reason is not None and reason.startswith("onednn_packed: ")
    assert "inference format" in reason and "`onednn`" in reason
    assert BACKEND.reason(args, "forward") is None


def test_backward_on_a_forward_plan_raises():
    problem = PROBLEMS["3x3-pad1"]
    x, w, b = _tensors(problem, torch.contiguous_format)
    plan = BACKEND.prepare(w, b, **problem.conv_kwargs(), input=x)
    with pytest.raises(Unsupported, match="inference format"):
        plan.backward_data(plan.forward(x))


def test_float64_and_1d_are_refused():
    x, w, b = PROBLEMS["3x3-pad1"].make_tensors(torch.float64)
    assert BACKEND.supports(x, w, b, padding=1).startswith("onednn_packed: dtype float64")
    x1, w1, b1 = ConvProblem(2, 4, 6, (17,), (3,), padding=1).make_tensors(torch.float32)
    assert "2-D only" in BACKEND.supports(x1, w1, b1, padding=1)
    with pytest.raises(Unsupported, match="2-D only"):
        BACKEND.conv(x1, w1, b1, padding=1)


def test_packs_what_eager_pytorch_keeps_off_onednn_as_inductor_does():
    """A small batch-1 dense conv goes to PyTorch's own kernels in eager mode; Inductor packs
    every constant 4-D conv weight, and so does this backend."""
    x, w, b = ConvProblem(1, 16, 16, (9, 10), (3, 3), padding=1).make_tensors(torch.float32)
    assert BACKEND.supports(x, w, b, padding=1) is None
    plan = BACKEND.prepare(w, b, padding=1, input=x)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    assert (plan.forward(x).double() - ref).abs().max() / ref.abs().max() < 1e-4


def test_supports_answers_for_meta_tensors():
    x = torch.empty(4, 16, 14, 14, device="meta")
    w = torch.empty(32, 16, 3, 3, device="meta")
    assert "CPU only" in BACKEND.supports(x, w, None, padding=1)
