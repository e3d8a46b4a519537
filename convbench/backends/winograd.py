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

The filter transform ``U = G w G^T`` is per-weight work done in `plan`, in float64 and rounded
once to the compute dtype. The plan owns the buffers of steps 1–6 and reuses them across
calls when autograd is not recording (as a cuDNN workspace; it saves the page faults of
fresh multi-megabyte allocations); under autograd every step allocates, so gradients flow.

float16/bfloat16 are computed in float32 internally and cast back at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convbench.backends import Backend, add_bias, register
from convbench.backends.wincnn import winograd_transform
from convbench.problem.spec import ConvArgs

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Largest tile (alpha = m + r - 1 points per axis) that "auto" picks, and that an explicit m
# may reach, per compute dtype. Float32 error grows ~exponentially with alpha (Barabasz et
# al. 2020); the limits keep the 2D relative error near 1e-6 (auto) and 1e-5 (explicit).
AUTO_ALPHA = {torch.float64: 8, torch.float32: 6}
MAX_ALPHA = {torch.float64: 10, torch.float32: 8}


@dataclass(frozen=True)
class Axis:
    """How one spatial axis is tiled: F(m, chunk) on a stride-1 undilated problem.

    ``phases`` stride phases × ``chunks`` kernel chunks become input channels; ``dilation``
    sub-grids × ``tiles`` tiles become GEMM columns.
    """

    stride: int
    dilation: int
    taps: int
    phases: int
    chunks: int
    chunk: int
    m: int
    out: int
    tiles: int

    @property
    def alpha(self) -> int:
        return self.m + self.chunk - 1

    def view_strides(self) -> tuple[int, ...]:
        """Index steps, in input elements, of (phase, chunk, sub-grid, tile, tile position)."""
        s, d = self.stride, self.dilation
        return (d, s * d * self.chunk, s, s * d * self.m, s * d)

    def view_sizes(self) -> tuple[int, ...]:
        return (self.phases, self.chunks, self.dilation, self.tiles, self.alpha)

    @property
    def needed(self) -> int:
        """Padded input length the view reaches into."""
        return 1 + sum(
            (n - 1) * st for n, st in zip(self.view_sizes(), self.view_strides(), strict=True)
        )


def _tile_cost(out_sub: int, m: int, chunk: int, chunks: int) -> int:
    # Multiplications of the elementwise (GEMM) stage per output channel pair, this axis.
    return chunks * math.ceil(out_sub / m) * (m + chunk - 1)


def plan_axis(
    taps: int, stride: int, dilation: int, out: int, m: int | None, cap: int
) -> Axis | str:
    """Choose (m, chunk) for one axis; ``m=None`` minimises `_tile_cost` within ``cap``."""
    phases = min(stride, taps)
    per_phase = math.ceil(taps / stride)
    out_sub = math.ceil(out / dilation)
    if per_phase == 1:
        choice = (1, 1)  # no overlap between outputs: nothing for Winograd to share
    elif m is not None:
        if m + 1 > cap:
            return f"F({m}, r) needs more than the {cap} points that stay accurate"
        chunks = math.ceil(per_phase / min(per_phase, cap - m + 1))
        choice = (m, math.ceil(per_phase / chunks))
    else:
        candidates = []
        for chunks in range(1, per_phase + 1):
            chunk = math.ceil(per_phase / chunks)
            if math.ceil(per_phase / chunk) != chunks:
                continue  # same chunk length with fewer chunks already listed
            for mm in range(1, cap - chunk + 2):
                cost = _tile_cost(out_sub, mm, chunk, chunks)
                candidates.append((cost, mm + chunk - 1, -mm, (mm, chunk)))
        choice = min(candidates)[-1]
    mm, chunk = choice
    return Axis(
        stride=stride,
        dilation=dilation,
        taps=taps,
        phases=phases,
        chunks=math.ceil(per_phase / chunk),
        chunk=chunk,
        m=mm,
        out=out,
        tiles=math.ceil(out_sub / mm),
    )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _kron(mats: list[torch.Tensor]) -> torch.Tensor:
    out = mats[0]
    for mat in mats[1:]:
        out = torch.kron(out, mat)
    return out


def _matrix(rows, device) -> torch.Tensor:
    return torch.tensor(
        [[float(v) for v in row] for row in rows], dtype=torch.float64, device=device
    )


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

    def __init__(self, m: int | tuple[int, ...] | str = "auto"):
        if m != "auto":
            ms = (m,) if isinstance(m, int) else tuple(m)
            if not ms or not all(isinstance(v, int) and v >= 1 for v in ms):
                raise ValueError(f"winograd: m must be 'auto', an int >= 1 or a tuple, got {m}")
            self.name = f"winograd-m{'x'.join(map(str, ms))}"
        self.m = m

    def axes(self, args: ConvArgs) -> list[Axis] | str:
        """The per-axis tiling plan, or why there is none."""
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
        return axes

    def check(self, args: ConvArgs) -> str | None:
        axes = self.axes(args)
        return axes if isinstance(axes, str) else None

    def plan(self, args, weight, bias):
        axes = self.axes(args)
        assert not isinstance(axes, str), axes
        g = args.groups
        cdtype = compute_dtype(args.dtype)
        forms = [winograd_transform(a.m, a.chunk) for a in axes]
        bts = [_matrix(f.BT, args.device).to(cdtype) for f in forms]
        ats = [_matrix(f.AT, args.device).to(cdtype) for f in forms]
        gk = _kron([_matrix(f.G, args.device) for f in forms])  # float64

        u = _filter_transform(weight, axes, gk, g).to(cdtype).contiguous()  # (A*g, C'/g, K/g)
        depthwise = u.shape[1] == 1
        k_out = args.out_channels
        cbias = bias.to(cdtype) if bias is not None else None
        ws = _Workspace(cdtype, args.device)

        def run(x: torch.Tensor) -> torch.Tensor:
            recording = torch.is_grad_enabled() and (
                x.requires_grad or u.requires_grad or (bias is not None and bias.requires_grad)
            )
            ws.recording = recording
            xp = _pad_channels_last(x, args, axes, ws)
            d = _gather_tiles(xp, axes, g, ws)  # (A, g*P*C'/g)
            v = _transform(bts, d, ws, "in").reshape(u.shape[0], -1, u.shape[1])
            gemm_shape = (u.shape[0], v.shape[1], u.shape[2])  # (A*g, P, K/g)
            if depthwise:
                mm = torch.mul(v, u, out=ws.out("gemm", gemm_shape))
            else:
                mm = torch.bmm(v, u, out=ws.out("gemm", gemm_shape))
            y = _untile(_transform(ats, mm, ws, "out"), axes, k_out, g, ws)
            fmt = torch.contiguous_format  # like torch: NCHW out unless the input is NHWC
            if x.dim() == 4 and not x.is_contiguous():
                if x.is_contiguous(memory_format=torch.channels_last):
                    fmt = torch.channels_last
            if recording:  # out= is not differentiable
                return add_bias(y, cbias).to(args.dtype).contiguous(memory_format=fmt)
            out = torch.empty(y.shape, dtype=args.dtype, device=y.device, memory_format=fmt)
            if cbias is None:
                return out.copy_(y)
            return torch.add(y, cbias.view(1, -1, *[1] * args.nd), out=out)

        prepared = {
            "U": u,
            "m": tuple(a.m for a in axes),
            "r": tuple(a.chunk for a in axes),
            "alpha": tuple(a.alpha for a in axes),
        }
        return run, prepared


class _Workspace:
    """Intermediate buffers owned by a plan (its input shape is fixed, so are theirs).

    ``buffer`` returns a tensor to copy into; ``out`` one to pass as ``out=``, or None while
    autograd records (``out=`` ops are not differentiable; then every step allocates).
    """

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device
        self.recording = False
        self._cache: dict = {}

    def buffer(self, key: str, shape, zero: bool = False) -> torch.Tensor:
        make = torch.zeros if zero else torch.empty
        if self.recording:
            return make(shape, dtype=self.dtype, device=self.device)
        # Inference-mode tensors cannot be written outside inference mode: separate buffers.
        slot = (key, torch.is_inference_mode_enabled())
        if slot not in self._cache:  # zeroed once; callers only rewrite what was not zero
            self._cache[slot] = make(shape, dtype=self.dtype, device=self.device)
        return self._cache[slot]

    def out(self, key: str, shape) -> torch.Tensor | None:
        return None if self.recording else self.buffer(key, shape)


def _pad_channels_last(x, args: ConvArgs, axes: list[Axis], ws: _Workspace) -> torch.Tensor:
    """The zero-padded input, channels last ``(N, *padded, C)``, in the compute dtype; padded
    at the end as far as the tile view reaches. One copy (transpose, cast, pad together)."""
    padded, inner = [], []
    for a, size, (lo, hi) in zip(axes, args.spatial, args.padding, strict=True):
        padded.append(max(size + lo + hi, a.needed))
        inner.append(slice(lo, lo + size))
    xp = ws.buffer("pad", (x.shape[0], *padded, x.shape[1]), zero=True)
    xp[(slice(None), *inner)].copy_(x.movedim(1, -1))
    return xp


def _transform(mats: list[torch.Tensor], t: torch.Tensor, ws: _Workspace, tag: str):
    """Apply one matrix per tile axis: ``(prod cols, rest)`` -> ``(prod rows, rest)``."""
    rows = [mat.shape[0] for mat in mats]
    rest = t.numel() // math.prod(mat.shape[1] for mat in mats)
    t = t.reshape(mats[0].shape[1], -1)
    out = torch.mm(mats[0], t, out=ws.out(tag + "0", (rows[0], t.shape[1])))
    if len(mats) == 2:
        out = out.reshape(rows[0], mats[1].shape[1], rest)
        batched = mats[1].expand(rows[0], *mats[1].shape)  # a view: no copies
        out = torch.bmm(batched, out, out=ws.out(tag + "1", (rows[0], rows[1], rest)))
    return out.reshape(-1, rest)


def _filter_transform(weight: torch.Tensor, axes: list[Axis], gk: torch.Tensor, groups: int):
    """``U = kron(G) @ w'`` in float64, where ``w'`` stacks each (phase, chunk) of every axis as
    extra input channels: ``w'[.., kappa, c, u] = w[(c*chunk + u)*stride + kappa]`` (zero
    beyond the kernel). Returns ``(prod alpha * groups, C'/g, K/g)`` for the batched GEMM, with
    channels ordered (phase, chunk per axis, channel) as `_gather_tiles` orders them."""
    nd = len(axes)
    w = weight.to(torch.float64)
    pads: list[int] = []
    for a, taps in zip(axes, weight.shape[2:], strict=True):
        pads[:0] = [0, a.stride * a.chunk * a.chunks - taps]
    if any(pads):
        w = F.pad(w, pads)
    k_out, c_g = w.shape[:2]
    split = [k_out, c_g]
    for a in axes:
        split += [a.chunks, a.chunk, a.stride]
    w = w.reshape(split)
    index = [slice(None)] * len(split)
    for i, a in enumerate(axes):
        index[2 + 3 * i + 2] = slice(0, a.phases)
    w = w[tuple(index)]
    # (K, Cg, [c, u, kappa] per axis) -> (K, [kappa, c] per axis, Cg, [u] per axis)
    order = [0]
    for i in range(nd):
        order += [2 + 3 * i + 2, 2 + 3 * i]
    order += [1] + [2 + 3 * i + 1 for i in range(nd)]
    w = w.permute(order).reshape(k_out, -1, math.prod(a.chunk for a in axes))
    c_in = w.shape[1]
    u = gk @ w.reshape(k_out * c_in, -1).T  # (A, K * C'/g): the long axis last, for BLAS
    u = u.reshape(-1, groups, k_out // groups, c_in).transpose(2, 3)
    return u.reshape(-1, c_in, k_out // groups)


def _gather_tiles(xp: torch.Tensor, axes: list[Axis], groups: int, ws: _Workspace):
    """All input tiles as ``(prod alpha, g * P * C'/g)``, ``P = N * prod(dilation * tiles)``,
    ``C'/g = prod(phases * chunks) * C/g``.

    One strided view of the channels-last padded input (per axis: phase, chunk, sub-grid,
    tile, position), permuted to the GEMM layout and copied once; channels stay innermost, so
    the copy moves contiguous runs of C/g."""
    n, c = xp.shape[0], xp.shape[-1]
    nd = len(axes)
    sizes, strides = [n], [xp.stride(0)]
    for i, a in enumerate(axes):
        sizes += a.view_sizes()
        strides += [st * xp.stride(1 + i) for st in a.view_strides()]
    sizes += [groups, c // groups]
    strides += [c // groups, 1]
    view = xp.as_strided(sizes, strides, xp.storage_offset())
    dim = [[1 + 5 * i + j for j in range(5)] for i in range(nd)]  # phase, chunk, rho, tile, pos
    order = [dm[4] for dm in dim] + [1 + 5 * nd, 0] + [dm[2] for dm in dim]
    order += [dm[3] for dm in dim] + [dm[j] for dm in dim for j in (0, 1)] + [2 + 5 * nd]
    view = view.permute(order)
    n_pos = math.prod(a.alpha for a in axes)
    d = ws.buffer("gather", (n_pos, view.numel() // n_pos))
    d.view(view.shape).copy_(view)
    return d


def _untile(y: torch.Tensor, axes: list[Axis], k_out: int, groups: int, ws: _Workspace):
    """``(prod m, g*P*K/g)`` -> ``(N, K, *out_spatial)`` in channels-last memory order; output
    index ``j = (tile*m + i)*dilation + rho`` along each axis."""
    nd = len(axes)
    n = y.numel() // (k_out * math.prod(a.m * a.dilation * a.tiles for a in axes))
    shape = [a.m for a in axes] + [groups, n] + [a.dilation for a in axes]
    shape += [a.tiles for a in axes] + [k_out // groups]
    y = y.reshape(shape)
    order = [nd + 1]
    for i in range(nd):
        order += [2 + 2 * nd + i, i, 2 + nd + i]  # tile, position in tile, sub-grid
    order += [nd, 2 + 3 * nd]
    y = y.permute(order)
    full = ws.buffer("untile", (n, *(a.tiles * a.m * a.dilation for a in axes), k_out))
    full.view(y.shape).copy_(y)
    return full[(slice(None), *(slice(0, a.out) for a in axes))].movedim(-1, 1)


def winograd(m: int | tuple[int, ...] | str = "auto") -> WinogradBackend:
    """A Winograd backend with output tile ``m`` (e.g. ``winograd(4)`` computes F(4, 3) on
    3×3 kernels); ``"auto"`` is the registered default. Not registered itself."""
    return WinogradBackend(m)
