"""ConvProblem / ConvArgs: shapes, FLOPs and validation, checked against PyTorch itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convbench.problem import ConvArgs, ConvProblem, ProblemError


def torch_output_shape(p: dict):
    """Output shape PyTorch computes (on meta tensors, so free), or None if it refuses."""
    nd = len(p["spatial"])
    x = torch.empty(p["batch"], p["in_channels"], *p["spatial"], device="meta")
    if p["in_channels"] % p["groups"]:
        return None
    w = torch.empty(p["out_channels"], p["in_channels"] // p["groups"], *p["kernel"], device="meta")
    fn = F.conv1d if nd == 1 else F.conv2d
    try:
        return tuple(fn(x, w, None, p["stride"], p["padding"], p["dilation"], p["groups"]).shape)
    except (RuntimeError, ValueError):
        return None


@st.composite
def raw_problems(draw):
    nd = draw(st.sampled_from([1, 2]))
    pad_form = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    padding = {
        "int": draw(st.integers(0, 3)),
        "tuple": tuple(draw(st.integers(0, 3)) for _ in range(nd)),
        "same": "same",
        "valid": "valid",
    }[pad_form]
    return dict(
        batch=draw(st.integers(1, 3)),
        in_channels=draw(st.integers(1, 8)),
        out_channels=draw(st.integers(1, 8)),
        spatial=tuple(draw(st.integers(1, 12)) for _ in range(nd)),
        kernel=tuple(draw(st.integers(1, 6)) for _ in range(nd)),
        stride=draw(st.sampled_from([1, 2, 3]))
        if draw(st.booleans())
        else tuple(draw(st.integers(1, 3)) for _ in range(nd)),
        padding=padding,
        dilation=draw(st.integers(1, 3)),
        groups=draw(st.sampled_from([1, 2, 3, 4])),
        bias=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(p=raw_problems())
def test_shapes_and_validity_agree_with_torch(p):
    want = torch_output_shape(p)
    if p["out_channels"] % p["groups"]:
        want = None  # torch checks this lazily on some paths; a problem spec must refuse it
    if want is None:
        with pytest.raises(ProblemError):
            ConvProblem(**p)
    else:
        problem = ConvProblem(**p)
        assert problem.output_shape == want


def test_flops_direct_convolution():
    p = ConvProblem(
        batch=8, in_channels=128, out_channels=128, spatial=(28, 28), kernel=3, padding=1
    )
    assert p.output_shape == (8, 128, 28, 28)
    assert p.flops == 2 * 8 * 128 * 28 * 28 * 128 * 9
    depthwise = ConvProblem(
        batch=1,
        in_channels=32,
        out_channels=32,
        spatial=(10,),
        kernel=(5,),
        groups=32,
        padding="same",
    )
    assert depthwise.flops == 2 * 32 * 10 * 1 * 5


@pytest.mark.parametrize(
    "kwargs, field, text",
    [
        (dict(spatial=(5, 5), kernel=(7, 7)), "kernel", "larger than the padded input"),
        (dict(in_channels=6, groups=4), "in_channels", "not divisible by groups=4"),
        (dict(out_channels=6, in_channels=4, groups=4), "out_channels", "not divisible"),
        (dict(stride=2, padding="same"), "padding", "'same' is not supported for strided"),
        (dict(padding="full"), "padding", "'same' or 'valid'"),
        (dict(stride=0), "stride", ">= 1"),
        (dict(dilation=(1, 2, 3)), "dilation", "tuple of 2 ints"),
        (dict(padding=-1), "padding", ">= 0"),
        (dict(batch=0), "batch", "positive int"),
        (dict(spatial=(4, 4, 4), kernel=(1, 1, 1)), "spatial", "1 (conv1d) or 2 (conv2d)"),
        (dict(kernel=(3, 3, 3)), "kernel", "one per spatial dim"),
        (dict(bias="yes"), "bias", "true or false"),
    ],
)
def test_impossible_problems_name_the_field(kwargs, field, text):
    base = dict(batch=2, in_channels=4, out_channels=4, spatial=(8, 8), kernel=(3, 3))
    with pytest.raises(ProblemError) as info:
        ConvProblem(**{**base, **kwargs})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")
    assert text in str(info.value)


def test_same_padding_is_resolved_like_torch():
    p = ConvProblem(
        batch=1,
        in_channels=1,
        out_channels=1,
        spatial=(10,),
        kernel=(4,),
        dilation=1,
        padding="same",
    )
    assert p.args().padding == ((1, 2),)  # total 3: the smaller half first, as torch pads
    assert p.output_shape == (1, 1, 10)


def test_problem_key_is_stable_and_field_sensitive():
    p = ConvProblem(
        batch=8, in_channels=64, out_channels=64, spatial=(56, 56), kernel=3, padding=1, bias=False
    )
    same = ConvProblem(
        batch=8,
        in_channels=64,
        out_channels=64,
        spatial=[56, 56],
        kernel=(3, 3),
        padding=(1, 1),
        bias=False,
    )
    assert p == same and p.key == same.key
    assert p.key == "7a5651beba8f"  # pinned: ids must not change between versions
    other = ConvProblem(
        batch=8, in_channels=64, out_channels=64, spatial=(56, 56), kernel=3, padding=1, bias=True
    )
    assert other.key != p.key


def test_args_from_call_handles_unbatched_and_checks_consistency():
    x = torch.empty(4, 9, 9, device="meta")
    w = torch.empty(6, 2, 3, 3, device="meta")
    args = ConvArgs.from_call(x, w, None, stride=2, padding=1, groups=2)
    assert args.unbatched and args.input_shape == (1, 4, 9, 9)
    assert args.output_shape == (1, 6, 5, 5)
    with pytest.raises(ProblemError, match="^weight:"):
        ConvArgs.from_call(torch.empty(2, 6, 9, 9, device="meta"), w, groups=2)
    with pytest.raises(ProblemError, match="^bias:"):
        ConvArgs.from_call(x, w, torch.empty(5, device="meta"), groups=2)
    with pytest.raises(ProblemError, match="^input:"):
        ConvArgs.from_call(torch.empty(9, 9, device="meta"), w, groups=2)
    with pytest.raises(ProblemError, match="^weight:.*dtype"):
        ConvArgs.from_call(x, w.to(torch.float64), groups=2)


def test_make_tensors_is_seeded_and_device_independent():
    p = ConvProblem(batch=2, in_channels=3, out_channels=4, spatial=(5,), kernel=3)
    a = p.make_tensors(torch.float32, seed=7)
    b = p.make_tensors(torch.float64, seed=7)
    assert torch.equal(a[0], b[0].float()) and a[2] is not None
