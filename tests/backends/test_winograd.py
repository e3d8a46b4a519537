"""The Winograd backend: generated transforms, results against torch, accuracy, gradients.

Transforms are checked exactly (Fraction arithmetic) against the published F(2,3)/F(4,3)
matrices of Lavin & Gray and against the correlation identity. Results are checked against
`torch.nn.functional.conv1d/conv2d` relative to max|reference|: float64 to 1e-10 (a wrong tap,
offset or bias moves the result by O(1)), float32 to 1e-4.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convbench
from convbench import ConvArgs, Unsupported
from convbench.backends.wincnn import (
    BARABASZ_POINTS,
    default_points,
    matvec,
    winograd_transform,
)
from convbench.backends.winograd import AUTO_ALPHA, MAX_ALPHA, WinogradBackend, winograd
from convbench.problem.axes import tolerance

VARIANTS = ["auto", 2, 4, 6]


def frac_matrix(rows):
    return [[Fraction(v) for v in row] for row in rows]


# -- generated transforms ------------------------------------------------------------------
def assert_same_up_to_row_scaling(mine, theirs_g, theirs_bt):
    """Row i of G and row i of BT may be scaled by (s, 1/s): same algorithm."""
    for g_row, bt_row, tg, tbt in zip(mine.G, mine.BT, theirs_g, theirs_bt, strict=True):
        pivot = next(k for k, v in enumerate(tg) if v != 0)
        scale = g_row[pivot] / tg[pivot]
        assert list(g_row) == [scale * v for v in tg]
        assert list(bt_row) == [v / scale for v in tbt]


def test_f23_reproduces_lavin_gray():
    t = winograd_transform(2, 3, (0, 1, -1))
    assert [list(r) for r in t.AT] == frac_matrix([[1, 1, 1, 0], [0, 1, -1, 1]])
    h = Fraction(1, 2)
    g = frac_matrix([[1, 0, 0], [h, h, h], [h, -h, h], [0, 0, 1]])
    bt = frac_matrix([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])
    assert_same_up_to_row_scaling(t, g, bt)


def test_f43_reproduces_lavin_gray():
    t = winograd_transform(4, 3, (0, 1, -1, 2, -2))
    at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    assert [list(r) for r in t.AT] == frac_matrix(at)
    s, tw, tf = Fraction(1, 6), Fraction(1, 12), Fraction(1, 24)
    g = [[Fraction(1, 4), 0, 0], [-s, -s, -s], [-s, s, -s], [tf, tw, s], [tf, -tw, s], [0, 0, 1]]
    bt = [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ]
    assert_same_up_to_row_scaling(t, frac_matrix(g), frac_matrix(bt))


@pytest.mark.parametrize("m", range(1, 9))
@pytest.mark.parametrize("r", [1, 2, 3, 5, 7])
def test_exact_identity_is_correlation(m, r):
    """AT[(G g) * (BT d)] == correlation of d and g, exactly, for default points."""
    t = winograd_transform(m, r)
    assert len(t.AT) == m and len(t.G) == t.alpha and len(t.BT) == t.alpha
    rng = random.Random(m * 100 + r)
    for _ in range(3):
        g = [Fraction(rng.randint(-9, 9), rng.randint(1, 7)) for _ in range(r)]
        d = [Fraction(rng.randint(-9, 9), rng.randint(1, 7)) for _ in range(t.alpha)]
        got = matvec(t.AT, [a * b for a, b in zip(matvec(t.G, g), matvec(t.BT, d), strict=True)])
        want = [sum(d[j + k] * g[k] for k in range(r)) for j in range(m)]
        assert got == want


def test_exact_identity_with_custom_points():
    t = winograd_transform(3, 4, (0, "1/3", -3, 5, "-2/7"))
    g = [Fraction(2), Fraction(-1, 3), Fraction(5, 2), Fraction(1)]
    d = [Fraction(k * k - 3, k + 1) for k in range(t.alpha)]
    got = matvec(t.AT, [a * b for a, b in zip(matvec(t.G, g), matvec(t.BT, d), strict=True)])
    assert got == [sum(d[j + k] * g[k] for k in range(4)) for j in range(3)]


def test_points_follow_barabasz_and_stay_distinct():
    assert winograd_transform(2, 3).points == (0, -1, 1)
    assert winograd_transform(4, 3).points == (0, -1, 1, Fraction(1, 2), -2)
    assert set(winograd_transform(6, 3).points) == {
        0,
        -1,
        1,
        Fraction(1, 2),
        Fraction(-1, 2),
        2,
        -2,
    }
    for n in range(0, 20):
        pts = default_points(n)
        assert len(pts) == n and len(set(pts)) == n
        if n in BARABASZ_POINTS:
            assert pts == BARABASZ_POINTS[n]


def test_bad_points_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        winograd_transform(2, 3, (0, 1, 1))
    with pytest.raises(ValueError, match="needs 3"):
        winograd_transform(2, 3, (0, 1))


# -- results against torch -----------------------------------------------------------------
def _cfg(cin, cout, spatial, kernel, batch=2, unbatched=False, bias=True, **kwargs):
    return dict(
        cin=cin,
        cout=cout,
        spatial=spatial,
        kernel=kernel,
        batch=batch,
        unbatched=unbatched,
        bias=bias,
        kwargs=kwargs,
    )


CONFIGS = {
    "1d-k3": _cfg(4, 5, (17,), (3,)),
    "1d-ragged-pad": _cfg(3, 4, (13,), (3,), padding=2),
    "1d-tuple-nobias": _cfg(3, 4, (16,), (5,), padding=(2,), bias=False),
    "1d-same-even": _cfg(3, 3, (15,), (4,), padding="same"),
    "1d-valid-k7": _cfg(2, 3, (20,), (7,), padding="valid"),
    "1d-k1": _cfg(5, 2, (9,), (1,)),
    "1d-k2": _cfg(3, 4, (10,), (2,), padding=1),
    "1d-stride2": _cfg(4, 5, (17,), (3,), stride=2, padding=1),
    "1d-stride3-k7": _cfg(2, 3, (30,), (7,), stride=3),
    "1d-stride-gt-kernel": _cfg(2, 3, (19,), (3,), stride=4, padding=1),
    "1d-dilation3": _cfg(3, 4, (25,), (3,), dilation=3, padding=3),
    "1d-stride2-dilation2": _cfg(3, 3, (27,), (3,), stride=2, dilation=2),
    "1d-stride2-dilation3": _cfg(3, 3, (29,), (4,), stride=2, dilation=3, padding=1),
    "1d-depthwise": _cfg(4, 4, (21,), (5,), groups=4, padding="same"),
    "1d-groups-mult": _cfg(4, 6, (14,), (3,), groups=2),
    "1d-long-kernel": _cfg(2, 3, (40,), (19,), padding=9),
    "1d-unbatched": _cfg(3, 4, (11,), (3,), unbatched=True, padding=1),
    "2d-k3": _cfg(3, 4, (9, 10), (3, 3), padding=1),
    "2d-ragged": _cfg(3, 4, (11, 13), (3, 3)),
    "2d-tuple-pad": _cfg(3, 4, (8, 9), (3, 5), padding=(1, 2)),
    "2d-same-even": _cfg(3, 3, (9, 10), (2, 4), padding="same"),
    "2d-valid": _cfg(2, 3, (7, 8), (3, 3), padding="valid", bias=False),
    "2d-1x7": _cfg(3, 4, (9, 12), (1, 7), padding=(0, 3)),
    "2d-3x1": _cfg(3, 4, (10, 6), (3, 1), padding=(1, 0)),
    "2d-k1": _cfg(4, 3, (5, 6), (1, 1)),
    "2d-k2": _cfg(3, 2, (7, 6), (2, 2)),
    "2d-k5": _cfg(2, 3, (12, 11), (5, 5), padding=2),
    "2d-k7-stride2": _cfg(3, 4, (17, 16), (7, 7), stride=2, padding=3),
    "2d-stride-tuple": _cfg(3, 4, (12, 13), (3, 3), stride=(1, 2), padding=1),
    "2d-dilation-tuple": _cfg(3, 4, (13, 12), (3, 2), dilation=(2, 3)),
    "2d-same-dilated": _cfg(3, 3, (12, 11), (3, 2), padding="same", dilation=(2, 3)),
    "2d-groups": _cfg(4, 6, (8, 9), (3, 3), groups=2, padding=1),
    "2d-depthwise": _cfg(6, 6, (9, 9), (3, 3), groups=6, padding=1),
    "2d-depthwise-stride2": _cfg(4, 4, (10, 11), (3, 3), groups=4, stride=2, padding=1),
    "2d-unbatched": _cfg(3, 4, (9, 10), (3, 3), unbatched=True, padding=1),
    "2d-batch1-kernel-eq-input": _cfg(3, 4, (5, 6), (5, 6), batch=1),
}


def make(cfg, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (cfg["cin"], *cfg["spatial"])
    if not cfg["unbatched"]:
        shape = (cfg["batch"], *shape)
    groups = cfg["kwargs"].get("groups", 1)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    w = torch.randn(
        (cfg["cout"], cfg["cin"] // groups, *cfg["kernel"]), generator=gen, dtype=torch.float64
    )
    b = torch.randn(cfg["cout"], generator=gen, dtype=torch.float64) if cfg["bias"] else None
    return [t.to(dtype) if t is not None else None for t in (x, w, b)], cfg["kwargs"]


def reference(x, w, b, kwargs):
    fn = F.conv1d if w.dim() == 3 else F.conv2d
    return fn(x.double(), w.double(), None if b is None else b.double(), **kwargs)


def rel_error(y, ref):
    scale = ref.abs().max().clamp_min(torch.finfo(torch.float64).tiny)  # all-padding outputs
    return ((y.double() - ref).abs().max() / scale).item()


# Float64 checks the indexing of every variant; float32 the largest tiles and the default.
DTYPE_VARIANTS = [(torch.float64, m) for m in VARIANTS] + [
    (torch.float32, "auto"),
    (torch.float32, 6),
]


@pytest.mark.parametrize(
    ("dtype", "m"), DTYPE_VARIANTS, ids=[f"{str(d)[6:]}-m{m}" for d, m in DTYPE_VARIANTS]
)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_matches_torch(config, m, dtype):
    (x, w, b), kwargs = make(CONFIGS[config], dtype)
    backend = winograd(m)
    assert backend.supports(x, w, b, **kwargs) is None
    y = backend.conv(x, w, b, **kwargs)
    ref = reference(x, w, b, kwargs)
    assert y.shape == ref.shape and y.dtype == dtype and y.is_contiguous()
    assert rel_error(y, ref) <= tolerance(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32(dtype):
    (x, w, b), kwargs = make(CONFIGS["2d-groups"], dtype)
    y = convbench.get_backend("winograd").conv(x, w, b, **kwargs)
    assert y.dtype == dtype
    assert rel_error(y, reference(x, w, b, kwargs)) <= (2e-2 if dtype == torch.float16 else 6e-2)
    plan = convbench.get_backend("winograd").prepare(w, b, input=x, **kwargs)
    assert plan.prepared["U"].dtype == torch.float32


def test_channels_last_input_gives_channels_last_output():
    (x, w, b), kwargs = make(CONFIGS["2d-k3"], torch.float32)
    x = x.contiguous(memory_format=torch.channels_last)
    y = convbench.get_backend("winograd").conv(x, w, b, **kwargs)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert rel_error(y, reference(x, w, b, kwargs)) <= tolerance(torch.float32)


def test_plan_is_reusable_across_inputs_and_modes():
    """The plan's reused buffers must not leak one call's data into the next."""
    (x, w, b), kwargs = make(CONFIGS["2d-ragged"], torch.float64)
    plan = winograd(4).prepare(w, b, input=x, **kwargs)
    first = plan(x)
    with torch.no_grad():
        assert torch.equal(plan(x), first)
        second = plan(2 * x + 1)
    with torch.inference_mode():
        third = plan(x - 3)
    assert rel_error(second, reference(2 * x + 1, w, b, kwargs)) <= 1e-10
    assert rel_error(third, reference(x - 3, w, b, kwargs)) <= 1e-10
    assert rel_error(first, reference(x, w, b, kwargs)) <= 1e-10  # untouched by later calls


# -- tile choice and refusals ------------------------------------------------------------
def axes_for(backend, x_shape, w_shape, dtype=torch.float32, **kwargs):
    x = torch.empty(x_shape, dtype=dtype, device="meta")
    w = torch.empty(w_shape, dtype=dtype, device="meta")
    return backend.axes(ConvArgs.from_call(x, w, None, **kwargs))


def test_auto_picks_f43_for_resnet_layers_and_small_tiles_for_tiny_outputs():
    auto = convbench.get_backend("winograd")
    assert isinstance(auto, WinogradBackend) and auto.name == "winograd"
    axes = axes_for(auto, (8, 128, 28, 28), (128, 128, 3, 3), padding=1)
    assert [(a.m, a.chunk) for a in axes] == [(4, 3), (4, 3)]
    axes = axes_for(auto, (1, 8, 4, 4), (8, 8, 3, 3))  # 2x2 output
    assert [(a.m, a.chunk) for a in axes] == [(2, 3), (2, 3)]
    axes = axes_for(auto, (1, 8, 9, 9), (8, 8, 1, 7), padding=(0, 3))
    assert axes[0].m == 1 and axes[0].alpha == 1  # a 1-tap axis has nothing to share
    for dtype in (torch.float32, torch.float64):
        for k in (2, 3, 5, 7, 11):
            axes = axes_for(auto, (2, 4, 30), (4, 4, k), dtype=dtype)
            assert axes[0].alpha <= AUTO_ALPHA[dtype]


def test_explicit_m_is_used_and_long_kernels_are_chunked():
    axes = axes_for(winograd(6), (2, 4, 20, 20), (4, 4, 3, 3))
    assert [(a.m, a.chunk, a.chunks) for a in axes] == [(6, 3, 1)] * 2
    (a,) = axes_for(winograd(4), (2, 4, 60), (4, 4, 19))
    assert a.m == 4 and a.alpha <= MAX_ALPHA[torch.float32] and a.chunks * a.chunk >= 19
    (a,) = axes_for(winograd(4), (2, 4, 60), (4, 4, 7), dtype=torch.float64)
    assert (a.m, a.chunk, a.chunks) == (4, 7, 1)
    assert winograd((2, 4)).name == "winograd-m2x4"
    axes = axes_for(winograd((2, 4)), (2, 4, 20, 20), (4, 4, 3, 3))
    assert [a.m for a in axes] == [2, 4]


def test_refusals_match_check():
    x = torch.randn(2, 4, 20)
    w = torch.randn(4, 4, 3)
    too_big = winograd(MAX_ALPHA[torch.float32])
    reason = too_big.supports(x, w)
    assert reason is not None and reason.startswith("winograd-m8:") and "float32" in reason
    with pytest.raises(Unsupported, match="accurate"):
        too_big.conv(x, w)
    assert too_big.supports(x.double(), w.double()) is None  # float64 allows larger tiles
    assert winograd((2, 2, 2)).supports(x, w) is not None
    xi, wi = x.to(torch.int32), w.to(torch.int32)
    assert "dtype" in convbench.get_backend("winograd").supports(xi, wi)
    with pytest.raises(Unsupported):
        convbench.get_backend("winograd").conv(xi, wi)
    with pytest.raises(ValueError):
        winograd(0)


# -- accuracy --------------------------------------------------------------------------------
def test_float32_accuracy_and_growth_with_tile_size():
    """Relative max error on N(0,1) data with 64 input channels (Barabasz et al. report the
    error growing with the tile; the float64 filter transform keeps it near float32 direct)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 24, 24, generator=gen, dtype=torch.float64)
    w = torch.randn(8, 64, 3, 3, generator=gen, dtype=torch.float64)
    ref = F.conv2d(x, w, padding=1)
    err = {m: rel_error(winograd(m).conv(x.float(), w.float(), padding=1), ref) for m in (2, 4, 6)}
    assert err[2] <= 1e-5 and err[4] <= 1e-5 and err[6] <= 1e-4, err
    assert err[2] < err[4] < err[6], err


# -- gradients -------------------------------------------------------------------------------
GRAD_CONFIGS = [
    "1d-stride2-dilation3",
    "1d-depthwise",
    "1d-long-kernel",
    "2d-k3",
    "2d-k7-stride2",
    "2d-dilation-tuple",
    "2d-groups",
    "2d-unbatched",
]


@pytest.mark.parametrize("m", ["auto", 4])
@pytest.mark.parametrize("config", GRAD_CONFIGS)
def test_gradients_match_autograd(config, m):
    (x, w, b), kwargs = make(CONFIGS[config], torch.float64, seed=1)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    ref_leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    y = winograd(m).conv(*leaves, **kwargs)
    ref = reference(*ref_leaves, kwargs)
    grad_out = torch.randn(
        ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    got = torch.autograd.grad(y, leaves, grad_out)
    want = torch.autograd.grad(ref, ref_leaves, grad_out)
    for label, g, r in zip(("input", "weight", "bias"), got, want, strict=True):
        assert (g - r).abs().max().item() <= 1e-9 * max(1.0, r.abs().max().item()), label


# -- property test ---------------------------------------------------------------------------
@st.composite
def problems(draw):
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 6)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    if draw(st.booleans()):
        stride, padding = (1,) * nd, "same"
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        padding = tuple(draw(st.integers(0, 3)) for _ in range(nd))
    spatial = []
    for i in range(nd):
        span = dilation[i] * (kernel[i] - 1) + 1
        pad = 0 if padding == "same" else 2 * padding[i]
        spatial.append(draw(st.integers(max(1, span - pad), span + 12)))
    x_shape = (cin, *spatial) if draw(st.booleans()) else (draw(st.integers(1, 2)), cin, *spatial)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    m = draw(st.sampled_from(["auto", 1, 2, 3, 4, 6]))
    return x_shape, (cout, cin // groups, *kernel), draw(st.booleans()), kwargs, m


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_problems_match_torch(problem):
    x_shape, w_shape, has_bias, kwargs, m = problem
    x = torch.randn(x_shape, dtype=torch.float64)
    w = torch.randn(w_shape, dtype=torch.float64)
    b = torch.randn(w_shape[0], dtype=torch.float64) if has_bias else None
    backend = winograd(m)
    assert backend.supports(x, w, b, **kwargs) is None
    y = backend.conv(x, w, b, **kwargs)
    ref = reference(x, w, b, kwargs)
    assert y.shape == ref.shape
    assert rel_error(y, ref) <= 1e-10


# -- large maps in bands of tile rows ------------------------------------------------------
@pytest.mark.parametrize(
    "x_shape, w_shape, kw",
    [
        ((2, 6, 23, 19), (5, 6, 3, 3), dict(padding=1)),  # ragged last band and last tile
        ((1, 8, 20, 20), (8, 1, 3, 3), dict(padding=1, groups=8)),  # depthwise
        ((2, 4, 16, 30), (6, 2, 3, 3), dict(padding=(2, 1), groups=2)),  # grouped, wide
        ((2, 5, 301), (3, 5, 3), dict(padding=2)),  # 1-D
        ((1, 4, 22, 22), (4, 4, 3, 1), dict(padding=(1, 0))),  # 1 tap on the second axis
    ],
)
def test_a_large_map_in_bands_gives_the_same_result(monkeypatch, x_shape, w_shape, kw):
    """With the budgets shrunk, small problems take the banded path — bands of one or a few
    tile rows, the last one ragged — and must match torch in float64 to 1e-10, in either
    memory format, exactly as the whole-image path does."""
    import convbench.backends.winograd as mod

    torch.manual_seed(0)
    x = torch.randn(*x_shape, dtype=torch.float64)
    w = torch.randn(*w_shape, dtype=torch.float64)
    b = torch.randn(w_shape[0], dtype=torch.float64)
    conv = F.conv2d if x.dim() == 4 else F.conv1d
    ref = conv(x, w, b, **kw)
    args = ConvArgs.from_call(x, w, b, **kw)
    whole = mod.winograd().plan(args, w, b)
    whole.prepare_pass("forward")
    assert whole._band_rows() is None  # far under the real budget
    monkeypatch.setattr(mod, "TILE_BUDGET_BYTES", 64)
    monkeypatch.setattr(mod, "BAND_BUDGET_BYTES", 1)  # one tile row per band
    plan = mod.winograd().plan(args, w, b)
    plan.prepare_pass("forward")
    assert plan._band_rows() == 1
    inputs = [x] + ([x.contiguous(memory_format=torch.channels_last)] if x.dim() == 4 else [])
    for xi in inputs:
        got = plan.forward(xi)
        assert got.shape == ref.shape
        assert (got - ref).abs().max() / ref.abs().max() < 1e-10
        assert torch.allclose(got, whole.forward(xi), rtol=0, atol=1e-12)
    monkeypatch.setattr(mod, "BAND_BUDGET_BYTES", 3 * plan._band_rows() * 10**4)
    assert (plan.forward(x) - ref).abs().max() / ref.abs().max() < 1e-10  # bands of many rows


def test_only_maps_over_the_budget_are_banded():
    """VGG-16's 64-channel layer at 224² is banded; a 256-channel one at 56² is done whole,
    as is any strided or dilated first axis."""

    def rows(c, k, size, **kw):
        x, w = torch.empty(8, c, size, size, device="meta"), torch.empty(k, c, 3, 3, device="meta")
        plan = winograd().plan(ConvArgs.from_call(x, w, None, **kw), torch.randn(k, c, 3, 3), None)
        plan.prepare_pass("forward")
        return plan._band_rows()

    assert rows(64, 64, 224, padding=1) == 4  # 36 × 56 tiles × 64 ch × 4 B = 516 KiB a row
    assert rows(64, 128, 112, padding=1) == 4  # the GEMM's output (128 ch) decides
    assert rows(256, 256, 56, padding=1) is None
    assert rows(64, 64, 224, padding=1, stride=2) is None
