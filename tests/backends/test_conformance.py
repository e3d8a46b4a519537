"""Every registered backend against torch.nn.functional.conv1d/conv2d and its gradients.

Each configuration and each direction (forward, backward_data, backward_weight, backward,
train) is either computed to within the dtype's tolerance or refused with `Unsupported`
exactly where the backend's `supports(..., direction=...)` says so — never a wrong answer.
Tolerances are relative to max|reference| and sit orders of magnitude below the error of any
plausible bug (a missing tap, a wrong offset or a missing bias moves the result by O(1)).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convbench
from convbench import ConvProblem, Unsupported
from convbench.measure.passes import pass_run, upstream_gradient
from convbench.measure.probes import accuracy
from convbench.measure.reference import reference as reference_of
from convbench.measure.reference import reference_conv
from convbench.problem.axes import DIRECTIONS, tolerance
from convbench.problem.layout import layout_of, to_layout

BACKENDS = convbench.backend_names()
# Backends that must compute every valid configuration on the CPU in float32/float64.
FULL_COVERAGE_CPU = {"naive", "im2col", "fft", "torch"}
# Differentiated by PyTorch itself (native autograd, double backward works).
CUDNN = {"cudnn", "cudnn_tf32", "cudnn_benchmark"}
VENDOR = {"torch", "onednn", *CUDNN}
#: Backends with no training passes (refused with a reason).
INFERENCE_ONLY = {"onednn_packed"}
# Every device the grid runs on: the CPU, and each CUDA device where there is one (marked
# `cuda`; on a machine without a GPU the CUDA half of the grid does not exist).
DEVICES = ["cpu"] + [
    pytest.param(f"cuda:{i}", marks=pytest.mark.cuda) for i in range(torch.cuda.device_count())
]
#: cudnn_tf32 computes float32 in TF32 (10-bit mantissas) on purpose, and so does torch on
#: CUDA where PyTorch's default lets cuDNN use TF32 (`torch.backends.cudnn.allow_tf32`, on
#: unless the user turns it off; torch keeps the user's settings): here their float32 answers
#: are held to TF32's accuracy; reports still judge them by float32's tolerance.
TF32_TOLERANCE = 5e-3


def computes_tf32(name: str, device: torch.device) -> bool:
    if name == "cudnn_tf32":
        return True
    return name == "torch" and device.type == "cuda" and torch.backends.cudnn.allow_tf32


def limit_for(name: str, dtype: torch.dtype, device: torch.device) -> float:
    if dtype == torch.float32 and computes_tf32(name, device):
        return TF32_TOLERANCE
    return tolerance(dtype)


def _cfg(
    cin,
    cout,
    spatial,
    kernel,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    bias=True,
    batch=2,
    unbatched=False,
):
    return dict(
        cin=cin,
        cout=cout,
        spatial=spatial,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
        batch=batch,
        unbatched=unbatched,
    )


CONFIGS = {
    # 1D
    "1d-basic": _cfg(4, 6, (17,), (3,)),
    "1d-pad1-nobias": _cfg(4, 6, (17,), (3,), padding=1, bias=False),
    "1d-pad-tuple": _cfg(4, 6, (16,), (5,), padding=(2,)),
    "1d-stride2": _cfg(4, 6, (17,), (3,), stride=2, padding=1),
    "1d-stride3-tuple": _cfg(3, 5, (20,), (4,), stride=(3,)),
    "1d-dilation2": _cfg(4, 6, (19,), (3,), dilation=2, padding=2),
    "1d-same-odd": _cfg(4, 4, (15,), (5,), padding="same"),
    "1d-same-even": _cfg(4, 4, (15,), (4,), padding="same"),
    "1d-same-dilated-even": _cfg(4, 4, (23,), (4,), padding="same", dilation=3),
    "1d-valid": _cfg(4, 6, (12,), (7,), padding="valid"),
    "1d-groups2": _cfg(4, 6, (13,), (3,), groups=2, padding=1),
    "1d-depthwise": _cfg(6, 6, (31,), (7,), groups=6, padding="same"),
    "1d-depthwise-mult": _cfg(3, 6, (14,), (3,), groups=3),
    "1d-k1": _cfg(5, 7, (9,), (1,)),
    "1d-kernel-equals-input": _cfg(3, 4, (6,), (6,)),
    "1d-unbatched": _cfg(4, 6, (17,), (3,), padding=1, unbatched=True),
    "1d-long-kernel": _cfg(2, 3, (64,), (31,), padding=15),
    "1d-stride-dilation": _cfg(4, 4, (29,), (3,), stride=2, dilation=3, padding=1),
    # 2D
    "2d-basic": _cfg(4, 6, (9, 10), (3, 3)),
    "2d-pad1": _cfg(4, 6, (9, 10), (3, 3), padding=1),
    "2d-pad-tuple-nobias": _cfg(3, 5, (8, 11), (3, 5), padding=(1, 2), bias=False),
    "2d-rect-kernel": _cfg(3, 4, (10, 9), (2, 4)),
    "2d-1x7": _cfg(3, 4, (9, 12), (1, 7), padding=(0, 3)),
    "2d-stride2": _cfg(4, 6, (11, 10), (3, 3), stride=2, padding=1),
    "2d-stride-tuple": _cfg(3, 4, (12, 13), (3, 3), stride=(1, 2), padding=1),
    "2d-dilation": _cfg(3, 4, (13, 12), (3, 3), dilation=2, padding=2),
    "2d-dilation-tuple": _cfg(3, 4, (13, 12), (3, 2), dilation=(2, 3)),
    "2d-same-odd": _cfg(4, 4, (9, 10), (3, 3), padding="same"),
    "2d-same-even": _cfg(4, 4, (9, 10), (2, 4), padding="same"),
    "2d-same-dilated": _cfg(4, 4, (12, 11), (3, 2), padding="same", dilation=(2, 3)),
    "2d-valid": _cfg(3, 4, (7, 8), (3, 3), padding="valid"),
    "2d-groups": _cfg(4, 6, (8, 9), (3, 3), groups=2, padding=1),
    "2d-depthwise": _cfg(8, 8, (9, 9), (3, 3), groups=8, padding=1),
    "2d-depthwise-stride2": _cfg(6, 6, (10, 11), (3, 3), groups=6, stride=2, padding=1),
    "2d-pointwise": _cfg(8, 5, (6, 7), (1, 1)),
    "2d-pointwise-stride2": _cfg(8, 5, (7, 7), (1, 1), stride=2),
    "2d-stem-7x7-s2": _cfg(3, 8, (23, 22), (7, 7), stride=2, padding=3),
    "2d-unbatched": _cfg(4, 6, (9, 10), (3, 3), padding=1, unbatched=True),
    "2d-unbatched-stride": _cfg(4, 6, (9, 10), (3, 3), stride=2, unbatched=True),
    "2d-batch1": _cfg(4, 6, (9, 10), (3, 3), padding=1, batch=1),
    "2d-kernel-equals-input": _cfg(3, 4, (5, 6), (5, 6)),
    "2d-11x11": _cfg(2, 3, (24, 24), (11, 11), padding=5),
}


def make(cfg, dtype, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    shape = (cfg["cin"], *cfg["spatial"])
    if not cfg["unbatched"]:
        shape = (cfg["batch"], *shape)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn(
        (cfg["cout"], cfg["cin"] // cfg["groups"], *cfg["kernel"]),
        generator=gen,
        dtype=torch.float64,
    )
    b = torch.randn(cfg["cout"], generator=gen, dtype=torch.float64) if cfg["bias"] else None
    kwargs = dict(
        stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"]
    )
    cast = [t.to(dtype=dtype, device=device) if t is not None else None for t in (x, w, b)]
    return cast, kwargs


def reference(x, w, b, kwargs):
    return reference_conv(x, w, b, **kwargs)


def check_backend(name, x, w, b, kwargs, direction="forward", layout="contiguous"):
    """The backend's answer for ``direction`` within the product's tolerance for the dtype
    (the rule every report applies), or `Unsupported` exactly where `supports` says so."""
    backend = convbench.get_backend(name)
    reason = backend.supports(x, w, b, **kwargs, direction=direction)
    dy = None
    if direction != "forward":
        shape = reference(x, w, b, kwargs).shape
        dy = upstream_gradient(shape, x.dtype, x.device, seed=7)
        dy = to_layout(dy, layout) if x.dim() == w.dim() else dy
    if reason is not None:
        assert isinstance(reason, str) and reason
        with pytest.raises(Unsupported):
            pass_run(backend, direction, x, w, b, dy, kwargs)
        return reason
    got = pass_run(backend, direction, x, w, b, dy, kwargs).got
    want = reference_of(direction, x, w, b, dy, **kwargs)
    assert len(got) == len(want)
    limit = limit_for(name, x.dtype, x.device)
    for part, g, r in zip(range(len(want)), got, want, strict=True):
        assert g.shape == r.shape, (direction, part, g.shape, r.shape)
        assert g.dtype == x.dtype and g.device == x.device, (direction, part, g.dtype, g.device)
        acc = accuracy(g, r)
        assert acc.rel_err <= limit, (
            f"{name} {direction} part {part}: rel_err {acc.rel_err:.3g} > {limit:g} ({x.dtype})"
        )
    return None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("name", BACKENDS)
def test_matches_torch(name, config, dtype, direction, device):
    (x, w, b), kwargs = make(CONFIGS[config], dtype, device=device)
    reason = check_backend(name, x, w, b, kwargs, direction)
    if name in FULL_COVERAGE_CPU and device == "cpu":
        assert reason is None, f"{name} refused a valid CPU problem: {reason}"


def in_layout(t, layout, unbatched=False):
    """``t`` in ``layout`` (an unbatched input as its batch of one would be)."""
    if unbatched:
        return to_layout(t.unsqueeze(0), layout).squeeze(0)
    return to_layout(t, layout)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("name", BACKENDS)
def test_matches_torch_in_channels_last(name, config, direction):
    """The grid again with the input, weight and upstream gradient in ``channels_last``
    (NHWC; NLC for 1-D): each backend computes it to the same tolerance, or refuses it with
    the reason `supports` gives for that layout."""
    cfg = CONFIGS[config]
    (x, w, b), kwargs = make(cfg, torch.float32)
    x, w = in_layout(x, "channels_last", cfg["unbatched"]), in_layout(w, "channels_last")
    assert cfg["unbatched"] or layout_of(x) == "channels_last"
    reason = check_backend(name, x, w, b, kwargs, direction, layout="channels_last")
    if name in FULL_COVERAGE_CPU:
        assert reason is None, f"{name} refused a valid channels_last problem: {reason}"


HALF_CONFIGS = ["1d-pad1-nobias", "1d-depthwise", "2d-pad1", "2d-stride2", "2d-groups"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("config", HALF_CONFIGS)
@pytest.mark.parametrize("name", BACKENDS)
def test_half_precision(name, config, dtype, direction, device):
    (x, w, b), kwargs = make(CONFIGS[config], dtype, device=device)
    check_backend(name, x, w, b, kwargs, direction)


GRAD_CONFIGS = [
    "1d-stride2",
    "1d-same-even",
    "1d-depthwise",
    "2d-pad1",
    "2d-stride2",
    "2d-dilation",
    "2d-groups",
    "2d-unbatched",
    "2d-same-even",
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", GRAD_CONFIGS)
@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_match_autograd(name, config, device):
    (x, w, b), kwargs = make(CONFIGS[config], torch.float64, seed=1, device=device)
    backend = convbench.get_backend(name)
    if backend.supports(x, w, b, **kwargs) is not None:
        pytest.skip(backend.supports(x, w, b, **kwargs))
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    ref_leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    y = backend.conv(*leaves, **kwargs)
    conv = F.conv1d if w.dim() == 3 else F.conv2d
    ref = conv(*ref_leaves, **kwargs)  # the truth autograd differentiates
    grad_out = torch.randn(
        ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    ).to(device)
    got = torch.autograd.grad(y, leaves, grad_out)
    want = torch.autograd.grad(ref, ref_leaves, grad_out)
    for label, g, r in zip(("input", "weight", "bias"), got, want, strict=True):
        err = (g - r).abs().max().item()
        assert err <= 1e-9 * max(1.0, r.abs().max().item()), f"grad {label}: {err}"


@pytest.mark.parametrize("name", sorted(CUDNN))
def test_unsupported_is_consistent_for_cudnn_without_cuda(name):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    (x, w, b), kwargs = make(CONFIGS["2d-pad1"], torch.float32)
    backend = convbench.get_backend(name)
    assert backend.supports(x, w, b, **kwargs) == "no CUDA device"
    with pytest.raises(Unsupported, match="no CUDA device"):
        backend.conv(x, w, b, **kwargs)


def test_cudnn_variants_differ_only_in_tf32_and_the_autotuner():
    plain, tf32, tuned = (
        convbench.get_backend(n) for n in ("cudnn", "cudnn_tf32", "cudnn_benchmark")
    )
    assert (plain.tf32, plain.benchmark) == (False, False)
    assert (tf32.tf32, tf32.benchmark) == (True, False)
    assert (tuned.tf32, tuned.benchmark) == (False, True)
    names = convbench.backend_names()
    assert names.index("cudnn") < names.index("cudnn_tf32") < names.index("cudnn_benchmark")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tf32_is_faster_on_a_wide_float32_layer():
    """On a GPU with tensor cores: a float32 3×3 layer with 256 channels, cudnn_tf32 against
    cudnn (TF32 off) — what TF32 buys; its error stays within TF32's tolerance."""
    from convbench.measure.clocks import clock_for
    from convbench.measure.config import TimingConfig
    from convbench.measure.engine import measure

    x = torch.randn(32, 256, 28, 28, device="cuda")
    w = torch.randn(256, 256, 3, 3, device="cuda")
    times = {}
    for name in ("cudnn", "cudnn_tf32"):
        plan = convbench.get_backend(name).prepare(w, None, padding=1, input=x)
        call = functools.partial(plan, x)
        times[name] = measure(call, TimingConfig(warmup_s=0.2), clock_for("cuda")).median_ms
    assert times["cudnn_tf32"] < 0.8 * times["cudnn"], times


def test_onednn_says_when_torch_takes_another_path():
    (x, w, b), kwargs = make(CONFIGS["2d-pad1"], torch.float64)
    reason = convbench.get_backend("onednn").supports(x, w, b, **kwargs)
    assert reason is not None and "Slow" in reason
    (x, w, b), kwargs = make(CONFIGS["2d-pad1"], torch.float32)
    assert convbench.get_backend("onednn").supports(x, w, b, **kwargs) is None


@st.composite
def problems(draw):
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    same = draw(st.booleans())
    stride = (1,) * nd if same else tuple(draw(st.integers(1, 3)) for _ in range(nd))
    padding = "same" if same else tuple(draw(st.integers(0, 3)) for _ in range(nd))
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    spatial = tuple(draw(st.integers(max(1, e - 3), e + 12)) for e in extent)
    try:
        return ConvProblem(
            batch=draw(st.integers(1, 3)),
            in_channels=cin,
            out_channels=cout,
            spatial=spatial,
            kernel=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=draw(st.booleans()),
        )
    except convbench.ProblemError:
        from hypothesis import assume

        assume(False)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_random_problems_all_backends(problem, dtype, device):
    x, w, b = problem.make_tensors(dtype, device, seed=3)
    kwargs = problem.conv_kwargs()
    ref = reference(x, w, b, kwargs)
    assert tuple(ref.shape) == problem.output_shape
    for name in BACKENDS:
        reason = check_backend(name, x, w, b, kwargs)
        if name in FULL_COVERAGE_CPU:
            assert reason is None, f"{name} on {device}: {reason}"


def test_plan_separates_weight_work_from_input_work():
    (x, w, b), kwargs = make(CONFIGS["2d-pad1"], torch.float64)
    ref = reference(x, w, b, kwargs)
    for name in BACKENDS:
        backend = convbench.get_backend(name)
        if backend.supports(x, w, b, **kwargs) is not None:
            continue
        plan = backend.prepare(w, b, **kwargs, input=x)
        for _ in range(2):  # a plan is reusable across inputs of the planned shape
            assert (plan(x).double() - ref).abs().max().item() < 1e-9
        with pytest.raises(ValueError, match="prepared for input shape"):
            plan(x[:, :, :-1])


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("name", [n for n in BACKENDS if n not in CUDNN])
def test_gradcheck(name, config):
    """`torch.autograd.gradcheck` (float64) through each backend's own backward passes."""
    (x, w, b), kwargs = make(CONFIGS[config], torch.float64, seed=4)
    backend = convbench.get_backend(name)
    if backend.supports(x, w, b, **kwargs, direction="train") is not None:
        pytest.skip(backend.supports(x, w, b, **kwargs, direction="train"))
    inputs = [t.clone().requires_grad_(True) for t in (x, w, b) if t is not None]

    def conv(*leaves):
        return (
            backend.conv(*leaves, **kwargs)
            if b is not None
            else backend.conv(*leaves, None, **kwargs)
        )

    assert torch.autograd.gradcheck(conv, inputs, fast_mode=True, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("name", [n for n in BACKENDS if n not in VENDOR | INFERENCE_ONLY])
def test_loss_backward_runs_the_backends_own_passes(name, monkeypatch):
    (x, w, b), kwargs = make(CONFIGS["2d-stride2"], torch.float64)
    backend = convbench.get_backend(name)
    calls = []
    original = convbench.Plan.backward

    def spy(self, *args, **kw):
        calls.append(self.backend)
        return original(self, *args, **kw)

    monkeypatch.setattr(convbench.Plan, "backward", spy)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    backend.conv(*leaves, **kwargs).square().sum().backward()
    assert calls == [name]
    ref_leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    conv = F.conv2d
    conv(*ref_leaves, **kwargs).square().sum().backward()
    for got, want in zip(leaves, ref_leaves, strict=True):
        assert torch.allclose(got.grad, want.grad, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", [n for n in BACKENDS if n not in VENDOR | INFERENCE_ONLY])
def test_double_backward_raises_naming_the_backend(name):
    (x, w, b), kwargs = make(CONFIGS["2d-pad1"], torch.float64)
    xg = x.clone().requires_grad_(True)
    y = convbench.get_backend(name).conv(xg, w, b, **kwargs)
    with pytest.raises(RuntimeError, match=rf"{name}: double backward"):
        torch.autograd.grad(y.sum(), xg, create_graph=True)


@pytest.mark.parametrize("name", ["onednn", "torch"])
def test_vendor_double_backward_is_pytorchs(name):
    (x, w, b), kwargs = make(CONFIGS["2d-pad1"], torch.float32)
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = convbench.get_backend(name).conv(xg, wg, b, **kwargs)
    (gx,) = torch.autograd.grad(y.square().sum(), xg, create_graph=True)
    (gw,) = torch.autograd.grad(gx.sum(), wg)  # a gradient of a gradient
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    (rx,) = torch.autograd.grad(F.conv2d(xr, wr, b, **kwargs).square().sum(), xr, create_graph=True)
    (rw,) = torch.autograd.grad(rx.sum(), wr)
    assert torch.allclose(gw, rw, rtol=1e-4, atol=1e-4)


def test_supports_names_the_direction_it_cannot_do():
    (x, w, b), kwargs = make(CONFIGS["2d-pad1"], torch.float32)
    backend = convbench.get_backend("naive")
    with pytest.raises(ValueError, match="direction: expected one of forward, backward_data"):
        backend.supports(x, w, b, **kwargs, direction="sideways")
