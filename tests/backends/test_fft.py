"""The FFT backend against torch.nn.functional.conv1d/conv2d.

Every plan the backend can choose (whole signal or overlap-save blocks at any candidate FFT
size, polyphase stride, folded padding) must give F.conv's answer; tolerances are relative to
max|reference|, far below the O(1) error of a wrong tap, offset or phase.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convbench
from convbench import ConvArgs, ConvProblem
from convbench.backends import fft, fft_plan

BACKEND = convbench.get_backend("fft")
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}

# (in, out, spatial, kernel, conv kwargs)
GRID = {
    "1d-basic": (4, 6, (17,), (3,), {}),
    "1d-pad-int": (4, 6, (17,), (5,), dict(padding=2)),
    "1d-pad-tuple": (4, 6, (16,), (5,), dict(padding=(3,))),
    "1d-same-odd": (3, 5, (15,), (5,), dict(padding="same")),
    "1d-same-even": (3, 5, (15,), (4,), dict(padding="same")),
    "1d-same-even-dilated": (3, 5, (23,), (4,), dict(padding="same", dilation=3)),
    "1d-valid": (4, 6, (12,), (7,), dict(padding="valid")),
    "1d-stride2": (4, 6, (17,), (3,), dict(stride=2, padding=1)),
    "1d-stride3-pad": (3, 5, (22,), (4,), dict(stride=3, padding=2)),
    "1d-stride-dilation": (4, 4, (29,), (3,), dict(stride=2, dilation=3, padding=1)),
    "1d-dilation-eq-stride": (4, 4, (29,), (3,), dict(stride=2, dilation=2, padding=3)),
    "1d-stride-gt-kernel": (3, 4, (20,), (2,), dict(stride=5, padding=1)),
    "1d-groups": (4, 6, (13,), (3,), dict(groups=2, padding=1)),
    "1d-depthwise": (6, 6, (31,), (7,), dict(groups=6, padding="same")),
    "1d-depthwise-stride": (6, 12, (31,), (7,), dict(groups=6, stride=3)),
    "1d-long-kernel": (2, 3, (64,), (31,), dict(padding=15)),
    "1d-k1": (5, 7, (9,), (1,), {}),
    "1d-kernel-equals-input": (3, 4, (6,), (6,), {}),
    "1d-output-in-padding": (2, 3, (1,), (1,), dict(stride=2, padding=1)),
    "2d-basic": (4, 6, (9, 10), (3, 3), {}),
    "2d-pad-tuple": (3, 5, (8, 11), (3, 5), dict(padding=(1, 2))),
    "2d-same-even": (4, 4, (9, 10), (2, 4), dict(padding="same")),
    "2d-same-dilated": (4, 4, (12, 11), (3, 2), dict(padding="same", dilation=(2, 3))),
    "2d-valid": (3, 4, (7, 8), (3, 3), dict(padding="valid")),
    "2d-stride2": (4, 6, (11, 10), (3, 3), dict(stride=2, padding=1)),
    "2d-stride3": (3, 4, (14, 13), (5, 4), dict(stride=3, padding=2)),
    "2d-stride-mixed": (3, 4, (12, 13), (3, 3), dict(stride=(1, 2), padding=(0, 1))),
    "2d-stride-dilation": (3, 4, (17, 16), (3, 3), dict(stride=(2, 3), dilation=(3, 2))),
    "2d-groups": (4, 6, (8, 9), (3, 3), dict(groups=2, padding=1)),
    "2d-depthwise": (8, 8, (9, 9), (3, 3), dict(groups=8, padding=1)),
    "2d-depthwise-stride2": (6, 6, (10, 11), (3, 3), dict(groups=6, stride=2, padding=1)),
    "2d-pointwise-stride2": (8, 5, (7, 7), (1, 1), dict(stride=2)),
    "2d-stem-7x7-s2": (3, 8, (23, 22), (7, 7), dict(stride=2, padding=3)),
    "2d-11x11": (2, 3, (24, 24), (11, 11), dict(padding=5)),
}


def make(cin, cout, spatial, kernel, groups=1, batch=2, bias=True, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *spatial, generator=gen, dtype=torch.float64)
    w = torch.randn(cout, cin // groups, *kernel, generator=gen, dtype=torch.float64)
    b = torch.randn(cout, generator=gen, dtype=torch.float64) if bias else None
    return [t.to(dtype) if t is not None else None for t in (x, w, b)]


def reference(x, w, b, **kwargs):
    conv = F.conv1d if w.dim() == 3 else F.conv2d
    return conv(x.double(), w.double(), None if b is None else b.double(), **kwargs)


def assert_close(y, ref, tol):
    assert y.shape == ref.shape
    err = (y.double() - ref).abs().max().item()
    # Inputs are N(0, 1); the floor of 1 covers outputs that only read padding (all zero).
    scale = max(ref.abs().max().item(), 1.0)
    assert err <= tol * scale, f"max error {err:.3g} > {tol:g} × {scale:.3g}"


def all_plans(args: ConvArgs):
    """Every combination of per-dim candidates `choose_plan` picks from."""
    per_dim = [
        fft_plan.dim_options(*a)
        for a in zip(
            args.spatial, args.kernel, args.stride, args.dilation, args.padding, strict=True
        )
    ]
    return list(itertools.product(*per_dim))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(GRID))
def test_matches_torch(name, dtype, bias):
    cin, cout, spatial, kernel, kwargs = GRID[name]
    x, w, b = make(cin, cout, spatial, kernel, kwargs.get("groups", 1), bias=bias, dtype=dtype)
    assert BACKEND.supports(x, w, b, **kwargs) is None
    y = BACKEND.conv(x, w, b, **kwargs)
    assert y.dtype == dtype
    assert_close(y, reference(x, w, b, **kwargs), TOL[dtype])


@pytest.mark.parametrize("name", ["1d-stride3-pad", "2d-stride-mixed", "2d-depthwise"])
def test_unbatched(name):
    cin, cout, spatial, kernel, kwargs = GRID[name]
    x, w, b = make(cin, cout, spatial, kernel, kwargs.get("groups", 1), batch=1)
    y = BACKEND.conv(x[0], w, b, **kwargs)
    assert_close(y, reference(x[0], w, b, **kwargs), TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", ["1d-same-even", "1d-depthwise", "2d-stride2", "2d-groups"])
def test_half_precision_computes_in_float32(name, dtype):
    cin, cout, spatial, kernel, kwargs = GRID[name]
    x, w, b = make(cin, cout, spatial, kernel, kwargs.get("groups", 1), dtype=dtype)
    y = BACKEND.conv(x, w, b, **kwargs)
    assert y.dtype == dtype
    # Against the exact result for the rounded inputs: only the final rounding remains.
    assert_close(y, reference(x, w, b, **kwargs), TOL[dtype])


@pytest.mark.parametrize(
    "name", ["1d-stride3-pad", "1d-same-even", "1d-depthwise-stride", "2d-stride-dilation",
             "2d-groups", "2d-depthwise-stride2"],
)  # fmt: skip
def test_gradients_match_autograd(name):
    cin, cout, spatial, kernel, kwargs = GRID[name]
    tensors = make(cin, cout, spatial, kernel, kwargs.get("groups", 1), seed=1)
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    ref_leaves = [t.clone().requires_grad_(True) for t in tensors]
    y = BACKEND.conv(*leaves, **kwargs)
    ref = reference(*ref_leaves, **kwargs)
    grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=ref.dtype)
    got = torch.autograd.grad(y, leaves, grad_out)
    want = torch.autograd.grad(ref, ref_leaves, grad_out)
    for label, g, r in zip(("input", "weight", "bias"), got, want, strict=True):
        err = (g - r).abs().max().item()
        assert err <= 1e-10 * r.abs().max().item(), f"grad {label}: {err:.3g}"


@pytest.mark.parametrize(
    "name", ["1d-same-even", "1d-stride3-pad", "1d-depthwise-stride", "1d-output-in-padding",
             "2d-same-dilated", "2d-stride-dilation", "2d-depthwise-stride2"],
)  # fmt: skip
def test_every_candidate_plan_is_exact(monkeypatch, name):
    """Whole-signal and every overlap-save blocking the cost model may pick agree with F.conv,
    as the forward's frames and as the weight gradient's (whose cross-correlations are read
    at the taps' lags)."""
    cin, cout, spatial, kernel, kwargs = GRID[name]
    x, w, b = make(cin, cout, spatial, kernel, kwargs.get("groups", 1))
    ref = reference(x, w, b, **kwargs)
    args = ConvArgs.from_call(x, w, b, **kwargs)
    plans = all_plans(args)
    choose, choose_weight = fft.choose_plan, fft.choose_weight_plan
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    dy = torch.randn(ref.shape, dtype=ref.dtype, generator=torch.Generator().manual_seed(3))
    rx, rw = torch.autograd.grad(reference(xr, wr, b, **kwargs), (xr, wr), dy)
    for dims in plans:
        # only the problem itself: the data gradient's phases choose their own frames
        monkeypatch.setattr(
            fft, "choose_plan", lambda a, dims=dims, **kw: dims if a == args else choose(a, **kw)
        )
        monkeypatch.setattr(fft, "choose_weight_plan", lambda a, dims=dims: dims)
        assert_close(BACKEND.conv(x, w, b, **kwargs), ref, TOL[torch.float64])
        plan = BACKEND.prepare(w, b, **kwargs, input=x, direction="backward_weight")
        assert_close(plan.backward_weight(x, dy)[0], rw, TOL[torch.float64])
    monkeypatch.setattr(fft, "choose_weight_plan", choose_weight)
    blocked = [p for p in plans if any(d.nblocks > 1 for d in p)]
    assert blocked, "expected overlap-save candidates"
    monkeypatch.setattr(
        fft, "choose_plan", lambda a, **kw: blocked[0] if a == args else choose(a, **kw)
    )
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(BACKEND.conv(xg, w, b, **kwargs), xg, dy)
    assert_close(gx, rx, TOL[torch.float64])


def test_long_signal_uses_overlap_save():
    """One image, a long signal and a short kernel: the cost model blocks the signal so that
    the FFT size (and the filter spectrum) track the kernel, and the answer is still exact."""
    x, w, b = make(4, 4, (8192,), (9,), batch=1, dtype=torch.float32)
    plan = BACKEND.prepare(w, b, padding="same", input=x)
    (dim,) = plan.prepared["dims"]
    assert dim.nblocks > 1 and dim.fft < 1024
    assert_close(plan(x), reference(x, w, b, padding="same"), TOL[torch.float32])


def test_filter_spectrum_budget_forces_blocking():
    """A wide conv1d over a long signal: the whole-signal filter spectrum would be ~4.4 GB."""
    x = torch.empty(8, 256, 16384, device="meta")
    w = torch.empty(256, 256, 511, device="meta")
    args = ConvArgs.from_call(x, w, padding="same")
    dims = fft.choose_plan(args)
    assert 8 * fft_plan.Sizes.of(args, dims).filter_elements <= fft_plan.FILTER_BUDGET_BYTES
    assert dims[0].nblocks > 1
    assert BACKEND.workspace_bytes(args) >= 8 * fft_plan.Sizes.of(args, dims).filter_elements


@pytest.mark.parametrize("via", ["filter_spectrum", "filter_spectrum_dft"])
def test_plan_computes_filter_spectrum_once(monkeypatch, via):
    """The spectrum is per-weight work, done once (by FFTs of frames, or by DFTs of the taps
    for small frames; either way once), and refresh rewrites it in place."""
    calls = []
    original = getattr(fft, via)

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    monkeypatch.setattr(fft, via, counting)
    monkeypatch.setattr(fft, "small_dft_pays", lambda *a: via == "filter_spectrum_dft")
    x, w, b = make(4, 6, (12, 13), (3, 3), dtype=torch.float32)
    plan = BACKEND.prepare(w, b, stride=2, padding=1, input=x)
    first, second = plan(x), plan(x)
    assert len(calls) == 1
    assert torch.equal(first, second)
    spectrum = plan.prepared["spectrum"]
    assert spectrum.is_complex() and spectrum.dtype == torch.complex64
    other = plan(2 * x)
    assert len(calls) == 1
    assert_close(other, reference(2 * x, w, b, stride=2, padding=1), TOL[torch.float32])
    plan.refresh(3 * w, b)
    assert plan.prepared["spectrum"] is spectrum  # the same buffer, rewritten
    assert_close(plan(x), reference(x, 3 * w, b, stride=2, padding=1), TOL[torch.float32])


def test_fft_sizes():
    sizes = fft_plan.fast_sizes(1000)
    assert sizes[:10] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    assert 11 not in sizes and 13 not in sizes and 990 not in sizes and 980 in sizes
    for n in (1, 11, 97, 1000, 4159, 8447):
        m = fft_plan.next_fast_size(n)
        assert m >= n and all(v < n for v in fft_plan.fast_sizes(m - 1))


def test_whole_signal_fft_size_needs_only_the_larger_padding():
    # Cross-correlation with the padding folded into the filter: L + max(lo, hi), not
    # L + lo + hi (let alone L + lo + hi + k - 1).
    whole = fft_plan.dim_options(4096, 127, 1, 1, (63, 63))[0]
    assert whole.nblocks == 1 and whole.fft == fft_plan.next_fast_size(4096 + 63)
    valid = fft_plan.dim_options(4096, 127, 1, 1, (0, 0))[0]
    assert valid.fft == 4096


def test_unread_phases_are_dropped():
    # dilation 2, stride 2: every tap reads the same input phase.
    dim = fft_plan.dim_options(29, 3, 2, 2, (3, 3))[0]
    assert dim.phases == (1,)
    assert len(fft_plan.dim_options(29, 3, 2, 1, (1, 1))[0].phases) == 2


def test_refuses_complex_input():
    x = torch.randn(1, 2, 8, dtype=torch.complex64)
    w = torch.randn(3, 2, 3, dtype=torch.complex64)
    assert "dtype" in BACKEND.supports(x, w)
    with pytest.raises(convbench.Unsupported):
        BACKEND.conv(x, w)


@st.composite
def problems(draw):
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2, 3]))
    kernel = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    same = draw(st.booleans())
    stride = (1,) * nd if same else tuple(draw(st.integers(1, 4)) for _ in range(nd))
    padding = "same" if same else tuple(draw(st.integers(0, 4)) for _ in range(nd))
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    spatial = tuple(draw(st.integers(max(1, e - 4), e + 14)) for e in extent)
    try:
        problem = ConvProblem(
            batch=draw(st.integers(1, 2)),
            in_channels=groups * draw(st.integers(1, 3)),
            out_channels=groups * draw(st.integers(1, 3)),
            spatial=spatial,
            kernel=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=draw(st.booleans()),
        )
    except convbench.ProblemError:
        assume(False)
    plans = all_plans(problem.args(torch.float64))
    return problem, draw(st.sampled_from(plans))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_problems_and_plans(case):
    problem, dims = case
    x, w, b = problem.make_tensors(torch.float64)
    kwargs = problem.conv_kwargs()
    original = fft.choose_plan
    fft.choose_plan = lambda args, **kw: dims  # hypothesis and monkeypatch fixtures do not mix
    try:
        y = BACKEND.conv(x, w, b, **kwargs)
    finally:
        fft.choose_plan = original
    assert_close(y, reference(x, w, b, **kwargs), TOL[torch.float64])
