"""Winograd minimal filtering F(m, r) (Lavin & Gray 2016), 1D and nested 2D F(m×m', r×r').

Transforms come from `convbench.backends.wincnn` (exact Toom–Cook matrices, Barabasz et al.
points). For each spatial axis ``o[j] = sum_k x[s*j + d*k] w[k]`` is rewritten as stride-1,
undilated correlations that Winograd can do, all in one pass:

* stride ``s``: the taps split into ``s' = min(s, r)`` phases ``k = kappa + s*q``; phase
  ``kappa`` is an undilated ``ceil(r/s)``-tap filter on the subsampled input
  ``x[d*kappa + s*i]``. Phases become extra input channels (the sum over phases is the sum
  over channels that the GEMM does anyway).
* dilation ``d``: output ``j = rho + d*v`` only sees the input sub-grid ``rho (mod d)``; the
  ``d`` sub-grids become extra batch (columns of the GEMM), re-interleaved at the end.
* long kernels: taps beyond what an accurate tile allows are split into ``chunks`` of ``rc``
  taps, shifted copies of the input stacked as channels, so F(m, rc) never exceeds
  ``MAX_ALPHA`` points.

Each input tile, for every (phase, chunk) channel and (sub-grid, tile) column, is one element
of a single ``as_strided`` view of the zero-padded, channels-last input. Per input (``A`` =
prod alpha, ``P`` = N × sub-grids × tiles, ``C'`` = C × phases × chunks):

1. pad: NCHW -> zero-padded NHWC in the compute dtype (one transposing copy);
2. gather: the view -> ``D (A, g, P, C'/g)``, one copy moving contiguous channel runs;
3. input transform ``V = BT D BT^T``: one small GEMM per axis (separable, not Kronecker:
   the sum of the tile sizes in flops, not their product);
4. ONE batched GEMM over tile positions and groups: ``(A·g, P, C'/g) @ (A·g, C'/g, K/g)``
   (an elementwise product for depthwise);
5. output transform ``Y = AT M AT^T``, again one small GEMM per axis;
6. untile: tiles and sub-grids interleaved back to NHWC, one copy; crop;
7. bias added while transposing into a fresh NCHW (or channels-last, if the input was)
   output.

The gradients are Winograd too:

* **data gradient**: a Winograd convolution of the upstream gradient with the flipped,
  channel-transposed filter, split by stride phase (`convbench.backends.transpose`); its
  filter transforms are per-weight work, done once;
* **weight gradient**: F(r', m) accumulated over tiles, as cuDNN's non-fused Winograd
  backward-filter: for every tile the taps' gradient is the correlation of the input tile
  with the upstream gradient's m outputs, ``AT' [(G' dy) ⊙ (BT d)]`` with F(r', m)'s
  matrices. Summed over tiles and images *before* the output transform, it is ONE batched
  GEMM per tile position, ``(A·g, K/g, P) @ (A·g, P, C'/g)``. F(r', m) and F(m, r') share
  their input transform BT (same points), so the forward's transformed tiles ``V`` serve
  both: a training forward keeps them (`forward_train`) and ``backward`` reuses them.

The filter transform ``U = G w G^T`` is per-weight work done in `plan`, in the compute dtype:
one copy of the weight and one GEMM that writes U in its final layout. ``refresh`` redoes it
into the same buffer when a training step has changed the weight. The plan owns the buffers
of steps 1–6 and reuses them across calls (as a cuDNN workspace; it saves the page faults of
fresh multi-megabyte allocations); a training forward keeps its ``V`` in fresh memory, for
the weight gradient.

float16/bfloat16 are computed in float32 internally and cast back at the end.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import torch

from convbench.backends import Backend, Passes, register
from convbench.backends.ops import bias_grad
from convbench.backends.transpose import (
    data_gradient,
    data_gradient_phases,
    phase_taps,
    phase_weight,
    transposed_weight,
)
from convbench.backends.winograd_tiles import (
    Axis,
    Tiling,
    Workspace,
    axis_candidates,
    compute_dtype,
    filter_transform,
    gather_tiles,
    gradient_tiles,
    pad_channels_last,
    plan_axis,
    restack_weight,
    tiling_seconds,
    transform,
    untile,
)
from convbench.problem.spec import ConvArgs

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: The forward works on blocks of images whose transformed tiles stay within this many bytes,
#: so the transforms and the GEMM find their operands in the last-level cache instead of
#: streaming hundreds of megabytes through memory on large feature maps.
TILE_BUDGET_BYTES = 8 * 2**20
#: An image whose transformed tiles or GEMM output exceed `TILE_BUDGET_BYTES` (64–128 channels
#: at 112²–224²) is done in bands of tile rows of about this many bytes: 1.1–1.3× faster on
#: VGG-16's first layers (2-core development machine); smaller maps are faster whole.
BAND_BUDGET_BYTES = 2 * 2**20
# Largest tile (alpha = m + r - 1 points per axis) that "auto" picks, and that an explicit m
# may reach, per compute dtype. Float32 error grows ~exponentially with alpha (Barabasz et
# al. 2020); the limits keep the 2D relative error near 1e-6 (auto) and 1e-5 (explicit).
AUTO_ALPHA = {torch.float64: 8, torch.float32: 6}
MAX_ALPHA = {torch.float64: 10, torch.float32: 8}


class WinogradPasses(Passes):
    backward_method = (
        "Winograd convolution of dy with the flipped filter (data); F(r, m) accumulated over "
        "tiles, one batched GEMM (weight)"
    )

    def __init__(self, backend, args, weight, bias, axes=None, flipped: bool = False):
        """``axes``: the forward's tiles (None: chosen when the forward is prepared, for the
        plan's intent). ``flipped``: ``weight`` holds the filter to use reversed along every
        spatial dim (the data gradient's flipped filter, given unflipped as a view):
        reversing G's columns applies the flip inside the filter transform, so no flipped
        copy is ever made."""
        super().__init__(args, weight, bias)
        self.backend, self.axes, self.flipped = backend, axes, flipped
        self.cdtype = compute_dtype(args.dtype)
        self.ws = Workspace(self.cdtype, args.device)
        self.tiling: Tiling | None = None  # the forward's
        self.wtiling: Tiling | None = None  # the weight gradient's
        self.u: torch.Tensor | None = None
        self._data_phases: list | None = None

    @property
    def purpose(self) -> str:
        return "train" if self.intent == "train" else "inference"

    # -- per-weight work -----------------------------------------------------------------------
    def prepare_pass(self, direction):
        args, device = self.args, self.args.device
        if direction == "forward" and self.tiling is None:
            axes = self.axes or self.backend.axes(args, self.purpose)
            self.tiling = Tiling(axes, device, self.cdtype, self.flipped)
            self.u = filter_transform(self.weight, axes, self.tiling.gk, args.groups)
            self.prepared = {
                "U": self.u,
                "m": tuple(a.m for a in axes),
                "r": tuple(a.chunk for a in axes),
                "alpha": tuple(a.alpha for a in axes),
            }
        elif direction == "backward_data" and self._data_phases is None:
            transposed = transposed_weight(self.weight, args.groups)
            self._data_phases = []
            for phase in data_gradient_phases(args):
                axes = self.backend.axes(phase.args, self.purpose)
                # One chunk of all the taps per axis: the flip can be done inside the filter
                # transform, on a view. Chunked (long) kernels get the flipped copy.
                flipped = all(
                    a.chunks == 1 and a.chunk == k
                    for a, k in zip(axes, phase.args.kernel, strict=True)
                )
                w = (phase_taps if flipped else phase_weight)(transposed, phase)
                passes = WinogradPasses(self.backend, phase.args, w, None, axes, flipped)
                passes.intent = self.intent
                passes.prepare_pass("forward")
                self._data_phases.append((phase, passes))
        elif direction == "backward_weight" and self.wtiling is None:
            if self.intent == "train":  # the forward's tiles, so that its V can be reused
                self.prepare_pass("forward")
                self.wtiling = self.tiling
            else:
                self.wtiling = Tiling(self.backend.axes(args, "weight"), device, self.cdtype)

    def refresh(self, prepared):
        """The new weight's transforms, written over the old ones (no allocation of U)."""
        if self.u is not None:
            filter_transform(
                self.weight, self.tiling.axes, self.tiling.gk, self.args.groups, self.u
            )
        if self._data_phases is not None:
            transposed = transposed_weight(self.weight, self.args.groups)
            for phase, passes in self._data_phases:
                cut = phase_taps if passes.flipped else phase_weight
                passes.weight = cut(transposed, phase)
                passes.refresh({"forward"})

    # -- forward -------------------------------------------------------------------------------
    def _tiles(self, x: torch.Tensor, tiling: Tiling, keep: bool) -> torch.Tensor:
        """Steps 1–3: the transformed input tiles ``V (A*g, P, C'/g)``. ``keep``: in fresh
        memory (kept past the next call), not in the plan's workspace."""
        self.ws.recording = keep
        try:
            xp = pad_channels_last(x, self.args, tiling.axes, self.ws)
            d = gather_tiles(xp, tiling.axes, self.args.groups, self.ws)  # (A, g*P*C'/g)
            v = transform(tiling.bts, d, self.ws, "in")
        finally:
            self.ws.recording = False
        return v.reshape(tiling.alpha * self.args.groups, self._columns(tiling, x.shape[0]), -1)

    def _columns(self, tiling: Tiling, images: int | None = None) -> int:
        n = self.args.batch if images is None else images
        return n * math.prod(a.dilation * a.tiles for a in tiling.axes)

    @property
    def ws_itemsize(self) -> int:
        return torch.empty((), dtype=self.cdtype).element_size()

    def _output(
        self, v: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None, axes=None
    ) -> torch.Tensor:
        args, u, ws = self.args, self.u, self.ws
        gemm_shape = (u.shape[0], v.shape[1], u.shape[2])  # (A*g, P, K/g)
        if u.shape[1] == 1:  # depthwise: an elementwise product
            mm = torch.mul(v, u, out=ws.out("gemm", gemm_shape))
        else:
            mm = torch.bmm(v, u, out=ws.out("gemm", gemm_shape))
        tiles = axes or self.tiling.axes
        y = untile(
            transform(self.tiling.ats, mm, ws, "out"), tiles, args.out_channels, args.groups, ws
        )
        if out is None:
            out = self._empty_output(x, y.shape)
        if self.bias is None:
            return out.copy_(y)
        bias = self.bias.to(self.cdtype).view(1, -1, *[1] * args.nd)
        return torch.add(y, bias, out=out)

    def _empty_output(self, x, shape):
        fmt = torch.contiguous_format  # like torch: NCHW out unless the input is NHWC
        if x.dim() == 4 and not x.is_contiguous():
            if x.is_contiguous(memory_format=torch.channels_last):
                fmt = torch.channels_last
        return torch.empty(shape, dtype=self.args.dtype, device=x.device, memory_format=fmt)

    def _band_rows(self) -> int | None:
        """Tile rows (first axis) per band, when an image is too large to do whole (see
        `BAND_BUDGET_BYTES`); None to do whole images. Plain first axes only (stride 1,
        undilated, one chunk), where a band is a slice of the padded input."""
        first, rest = self.tiling.axes[0], self.tiling.axes[1:]
        if (first.stride, first.dilation, first.chunks) != (1, 1, 1) or first.tiles < 2:
            return None
        per_row = self.u.shape[0] * math.prod(a.dilation * a.tiles for a in rest)
        per_row *= max(self.u.shape[1], self.u.shape[2]) * self.ws_itemsize
        if per_row * first.tiles <= TILE_BUDGET_BYTES:
            return None
        return max(1, BAND_BUDGET_BYTES // per_row)

    def _banded(self, x, rows: int):
        """Steps 1–7 image by image, and steps 2–7 band by band of ``rows`` tile rows: a
        band's tiles are a view of the padded image from its first input row on."""
        args, (first, *rest) = self.args, self.tiling.axes
        out = self._empty_output(x, (x.shape[0], args.out_channels, *args.out_spatial))
        for i in range(x.shape[0]):
            xp = pad_channels_last(x[i : i + 1], args, self.tiling.axes, self.ws)
            for t0 in range(0, first.tiles, rows):
                r0 = t0 * first.m
                n_rows = min(rows * first.m, first.out - r0)
                band = [replace(first, tiles=min(rows, first.tiles - t0), out=n_rows), *rest]
                d = gather_tiles(xp[:, r0:], band, args.groups, self.ws)
                v = transform(self.tiling.bts, d, self.ws, "in")
                v = v.view(self.u.shape[0], -1, self.u.shape[1])  # (A*g, the band's P, C'/g)
                self._output(v, x, out[i : i + 1, :, r0 : r0 + n_rows], band)
        return out

    def forward(self, x):
        rows = self._band_rows()
        if rows is not None:
            return self._banded(x, rows)
        n = x.shape[0]
        per_image = self.u.shape[0] * self._columns(self.tiling) // self.args.batch
        per_image *= self.u.shape[1] * self.ws_itemsize
        block = max(1, TILE_BUDGET_BYTES // max(per_image, 1))
        if block >= n:
            return self._output(self._tiles(x, self.tiling, keep=False), x)
        out = self._empty_output(x, (n, self.args.out_channels, *self.args.out_spatial))
        for b0 in range(0, n, block):
            b1 = min(n, b0 + block)
            part = x[b0:b1]
            self._output(self._tiles(part, self.tiling, keep=False), part, out[b0:b1])
        return out

    def forward_train(self, x):
        self.prepare_pass("backward_weight")
        v = self._tiles(x, self.tiling, keep=True)
        return self._output(v, x), (v if self.wtiling is self.tiling else None)

    # -- data gradient -------------------------------------------------------------------------
    def backward_data(self, dy):
        self.prepare_pass("backward_data")
        return data_gradient(self.args, self._data_phases, dy)

    # -- weight gradient -----------------------------------------------------------------------
    def _weight_grad(self, v: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """``dW' = AT' [Σ_tiles (G' dy) ⊙ V]``: F(r', m) on every tile, summed in the
        transformed domain by one batched GEMM, then restacked into the weight's shape."""
        self.prepare_pass("backward_weight")
        t, args, g, ws = self.wtiling, self.args, self.args.groups, self.ws
        e = gradient_tiles(dy.to(self.cdtype), t.axes, g, ws)  # (prod m, g*P*K/g)
        e = transform(t.g2, e, ws, "dyin").reshape(v.shape[0], v.shape[1], -1)  # (A*g, P, K/g)
        if v.shape[2] == 1 and e.shape[2] == 1:  # depthwise
            mm = (e * v).sum(1, keepdim=True)  # (A*g, 1, 1)
        else:
            mm = torch.bmm(e.transpose(1, 2), v)  # (A*g, K/g, C'/g)
        dw = transform(t.at2, mm.reshape(t.alpha, -1), ws, "dwout")
        dw = dw.reshape(-1, g, args.out_channels // g, mm.shape[2])  # (prod r', g, K/g, C'/g)
        return restack_weight(dw, t.axes, self.weight.shape, g).to(args.dtype)

    def backward_weight(self, x, dy):
        self.prepare_pass("backward_weight")
        v = self._tiles(x, self.wtiling, keep=False)
        return self._weight_grad(v, dy), bias_grad(dy, self.bias)

    def backward(self, x, dy, saved=None, need_data=True, need_weight=True):
        dx = self.backward_data(dy) if need_data else None
        dw = db = None
        if need_weight:
            self.prepare_pass("backward_weight")
            v = saved if saved is not None else self._tiles(x, self.wtiling, keep=False)
            dw, db = self._weight_grad(v, dy), bias_grad(dy, self.bias)
        return dx, dw, db


@register
class WinogradBackend(Backend):
    """Winograd F(m, r) convolution; ``m`` is the output tile per spatial axis.

    ``m="auto"`` (the registered default) picks, per axis, the tile and kernel chunking that
    minimise the elementwise-stage multiplications within ``AUTO_ALPHA`` points: F(4,3) on
    3-tap axes with 7+ outputs, F(3,3)/F(2,3) where a ragged last tile would waste more, no
    transform on 1-tap axes, chunked F(m, r') for long kernels. An int or a tuple
    (one per axis) fixes m on every axis whose kernel (per stride phase) has 2+ taps; axes
    with 1 tap use m = 1, and longer kernels are chunked to stay within ``MAX_ALPHA``.
    """

    name = "winograd"
    description = "Winograd F(m, r) minimal filtering: tile transforms + one batched GEMM"
    backward_method = WinogradPasses.backward_method

    def __init__(self, m: int | tuple[int, ...] | str = "auto"):
        if m != "auto":
            ms = (m,) if isinstance(m, int) else tuple(m)
            if not ms or not all(isinstance(v, int) and v >= 1 for v in ms):
                raise ValueError(f"winograd: m must be 'auto', an int >= 1 or a tuple, got {m}")
            self.name = f"winograd-m{'x'.join(map(str, ms))}"
        self.m = m

    def axes(self, args: ConvArgs, purpose: str = "inference") -> list[Axis] | str:
        """The per-axis tiling plan, or why there is none.

        With ``m="auto"``, ``purpose`` decides: ``"inference"`` minimises the elementwise
        stage's multiplications (the filter transform is done once); ``"train"`` minimises
        `tiling_seconds` of forward + filter transform + weight gradient on shared tiles
        (all three repeat every step, and U and the weight gradient's transformed output
        grow with alpha², so small maps want small tiles); ``"weight"`` the weight
        gradient alone."""
        if args.dtype not in FLOAT_DTYPES:
            return f"{self.name}: dtype {args.dtype} not supported"
        cdtype = compute_dtype(args.dtype)
        if self.m == "auto":
            ms, cap = (None,) * args.nd, AUTO_ALPHA[cdtype]
        else:
            ms = (self.m,) * args.nd if isinstance(self.m, int) else tuple(self.m)
            if len(ms) == 1:
                ms *= args.nd
            if len(ms) != args.nd:
                return f"{self.name}: {len(ms)} tile sizes for a {args.nd}-D convolution"
            cap = MAX_ALPHA[cdtype]
        axes = []
        for i in range(args.nd):
            axis = plan_axis(
                args.kernel[i], args.stride[i], args.dilation[i], args.out_spatial[i], ms[i], cap
            )
            if isinstance(axis, str):
                return f"{self.name}: {axis} in {cdtype}".replace("torch.", "")
            axes.append(axis)
        if self.m != "auto" or purpose == "inference":
            return axes
        parts = ("forward", "filter", "weight") if purpose == "train" else ("weight",)
        options = [
            axis_candidates(
                args.kernel[i], args.stride[i], args.dilation[i], args.out_spatial[i], cap
            )
            for i in range(args.nd)
        ]
        return list(min(itertools.product(*options), key=lambda c: tiling_seconds(args, c, parts)))

    def check(self, args: ConvArgs) -> str | None:
        axes = self.axes(args)
        return axes if isinstance(axes, str) else None

    def check_pass(self, args: ConvArgs, direction: str) -> str | None:
        if direction == "backward_data":
            for phase in data_gradient_phases(args):
                reason = self.check(phase.args)
                if reason is not None:
                    return f"{reason} (data gradient)"
        return None

    def plan(self, args, weight, bias):
        return WinogradPasses(self, args, weight, bias)


def winograd(m: int | tuple[int, ...] | str = "auto") -> WinogradBackend:
    """A Winograd backend with output tile ``m`` (e.g. ``winograd(4)`` computes F(4, 3) on
    3×3 kernels); ``"auto"`` is the registered default. Not registered itself."""
    return WinogradBackend(m)
