"""Winograd's tiles: how each spatial axis is tiled, and the data movement and small
transforms around the batched GEMM (`convbench.backends.winograd` is the algorithm).

Everything here works on the decomposed problem: stride phases and kernel chunks stacked as
input channels, dilation sub-grids and tiles as GEMM columns (see `Axis`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convbench.backends.wincnn import winograd_transform
from convbench.problem.spec import ConvArgs


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


def tile_cost(out_sub: int, m: int, chunk: int, chunks: int) -> int:
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
                cost = tile_cost(out_sub, mm, chunk, chunks)
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


def axis_candidates(taps: int, stride: int, dilation: int, out: int, cap: int) -> list[Axis]:
    """Every (m, chunk) tiling of one axis within ``cap`` points (for the cost model)."""
    per_phase = math.ceil(taps / stride)
    if per_phase == 1:
        return [plan_axis(taps, stride, dilation, out, None, cap)]
    found = {}
    for chunks in range(1, per_phase + 1):
        chunk = math.ceil(per_phase / chunks)
        for m in range(1, cap - chunk + 2):
            axis = plan_axis(taps, stride, dilation, out, m, m + chunk)
            if not isinstance(axis, str):
                found[(axis.m, axis.chunk)] = axis
    return list(found.values())


# Cost-model rates, measured roughly on the 2-core development machine in float32; only
# their ratios matter for the choice of tiles.
GEMM_S_PER_FLOP = 1 / 80e9  # the batched GEMM
MOVE_S_PER_BYTE = 1 / 4e9  # gathers, transforms (small GEMMs bound by memory) and copies


def tiling_seconds(args: ConvArgs, axes: list[Axis], parts: tuple[str, ...]) -> float:
    """Rough float32 time of the ``parts`` of a training step with these tiles: ``forward``
    (pad, gather, input transform, GEMM, output transform, untile), ``filter`` (writing U)
    and ``weight`` (dy tiles and their transform, the GEMM, the output transform of the
    weight gradient; the input side too unless the forward's tiles are kept)."""
    a = math.prod(x.alpha for x in axes)
    m = math.prod(x.m for x in axes)
    chunk = math.prod(x.chunk for x in axes)
    cols = args.batch * math.prod(x.dilation * x.tiles for x in axes)
    c_in = args.in_channels * math.prod(x.phases * x.chunks for x in axes)
    c_g, k = c_in // args.groups, args.out_channels
    moved = 0.0
    flops = 0.0
    input_side = 3 * a * cols * c_in  # gather copy, input transform (read + write)
    if "forward" in parts:
        moved += input_side + 2 * a * cols * k + 2 * m * cols * k
        flops += 2 * a * cols * c_g * k
    if "filter" in parts:  # the weight copy in U's order, U itself
        moved += (chunk + a) * c_g * k * args.groups
    if "weight" in parts:
        moved += (0 if "forward" in parts else input_side) + m * cols * k + 2 * a * cols * k
        # the GEMM's transformed output, read and written again by the output transform
        moved += 3 * a * c_g * k * args.groups + chunk * c_g * k * args.groups
        flops += 2 * a * cols * c_g * k
    return 4 * moved * MOVE_S_PER_BYTE + flops * GEMM_S_PER_FLOP


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def kron(mats: list[torch.Tensor]) -> torch.Tensor:
    out = mats[0]
    for mat in mats[1:]:
        out = torch.kron(out, mat)
    return out


def matrix(rows, device) -> torch.Tensor:
    return torch.tensor(
        [[float(v) for v in row] for row in rows], dtype=torch.float64, device=device
    )


class Tiling:
    """One choice of tiles (`Axis` per spatial dim) and the transforms it needs: BT and AT of
    F(m, r') for the forward, G and AT of F(r', m) for the weight gradient (its BT is the
    forward's: same points)."""

    def __init__(self, axes: list[Axis], device, cdtype, flipped: bool = False):
        self.axes = axes
        forms = [winograd_transform(a.m, a.chunk) for a in axes]
        self.bts = [matrix(f.BT, device).to(cdtype) for f in forms]
        self.ats = [matrix(f.AT, device).to(cdtype) for f in forms]
        gs = [matrix(f.G, device) for f in forms]
        if flipped:
            gs = [g.flip(1) for g in gs]
        self.gk = kron(gs).to(cdtype)
        back = [winograd_transform(a.chunk, a.m) for a in axes]
        self.g2 = [matrix(f.G, device).to(cdtype) for f in back]
        self.at2 = [matrix(f.AT, device).to(cdtype) for f in back]

    @property
    def alpha(self) -> int:
        return math.prod(a.alpha for a in self.axes)


class Workspace:
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
        slot = (key, tuple(shape), torch.is_inference_mode_enabled())
        if slot not in self._cache:  # zeroed once; callers only rewrite what was not zero
            self._cache[slot] = make(shape, dtype=self.dtype, device=self.device)
        return self._cache[slot]

    def out(self, key: str, shape) -> torch.Tensor | None:
        return None if self.recording else self.buffer(key, shape)


def pad_channels_last(x, args: ConvArgs, axes: list[Axis], ws: Workspace) -> torch.Tensor:
    """The zero-padded input, channels last ``(N, *padded, C)``, in the compute dtype; padded
    at the end as far as the tile view reaches. One copy (transpose, cast, pad together)."""
    padded, inner = [], []
    for a, size, (lo, hi) in zip(axes, args.spatial, args.padding, strict=True):
        padded.append(max(size + lo + hi, a.needed))
        inner.append(slice(lo, lo + size))
    xp = ws.buffer("pad", (x.shape[0], *padded, x.shape[1]), zero=True)
    xp[(slice(None), *inner)].copy_(x.movedim(1, -1))
    return xp


def transform(mats: list[torch.Tensor], t: torch.Tensor, ws: Workspace, tag: str):
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


def filter_transform(
    weight: torch.Tensor,
    axes: list[Axis],
    gk: torch.Tensor,
    groups: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``U = kron(G) @ w'`` in ``gk``'s dtype, where ``w'`` stacks each (phase, chunk) of every
    axis as extra input channels: ``w'[.., kappa, c, u] = w[(c*chunk + u)*stride + kappa]``
    (zero beyond the kernel). Returns ``(prod alpha * groups, C'/g, K/g)`` for the batched
    GEMM, with channels ordered (phase, chunk per axis, channel) as `gather_tiles` orders them.

    One copy of the weight into ``(taps, g, C'/g, K/g)``, then ONE GEMM whose output is
    already U's layout (into ``out``, when re-preparing a plan in place): U is written once,
    which is what bounds the cost — it holds ``prod alpha / prod r`` times the weight."""
    nd = len(axes)
    w = weight.to(gk.dtype)
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
    # (K, Cg, [c, u, kappa] per axis) -> ([u] per axis, K, [kappa, c] per axis, Cg)
    order = [2 + 3 * i + 1 for i in range(nd)] + [0]
    for i in range(nd):
        order += [2 + 3 * i + 2, 2 + 3 * i]
    order += [1]
    w = w.permute(order)
    taps = math.prod(a.chunk for a in axes)
    k_g = k_out // groups
    # (taps, g, K/g, C'/g) -> (taps, g, C'/g, K/g): the GEMM's right operand, in U's order
    w = w.reshape(taps, groups, k_g, -1).transpose(2, 3).reshape(taps, -1)
    c_in = w.shape[1] // k_out
    u = torch.mm(gk, w, out=None if out is None else out.view(gk.shape[0], -1))
    return u.view(-1, c_in, k_g)


def gather_tiles(xp: torch.Tensor, axes: list[Axis], groups: int, ws: Workspace):
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


def untile(y: torch.Tensor, axes: list[Axis], k_out: int, groups: int, ws: Workspace):
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


def gradient_tiles(dy: torch.Tensor, axes: list[Axis], groups: int, ws: Workspace):
    """The upstream gradient in the layout `untile` reads the output from, ``(prod m,
    g * P * K/g)`` — its adjoint: zero beyond the output, channels innermost."""
    n, k_out, nd = dy.shape[0], dy.shape[1], len(axes)
    full = ws.buffer("dy", (n, *(a.tiles * a.m * a.dilation for a in axes), k_out), zero=True)
    full[(slice(None), *(slice(0, a.out) for a in axes))].copy_(dy.movedim(1, -1))
    shape = [n]
    for a in axes:
        shape += [a.tiles, a.m, a.dilation]
    view = full.view(*shape, groups, k_out // groups)
    # (n, [tile, pos, sub-grid] per axis, g, K/g) -> ([pos], g, n, [sub-grid], [tile], K/g)
    order = [2 + 3 * i for i in range(nd)] + [1 + 3 * nd, 0]
    order += [3 + 3 * i for i in range(nd)] + [1 + 3 * i for i in range(nd)] + [2 + 3 * nd]
    view = view.permute(order)
    e = ws.buffer(
        "dytiles", (math.prod(a.m for a in axes), view.numel() // math.prod(a.m for a in axes))
    )
    e.view(view.shape).copy_(view)
    return e


def restack_weight(dw: torch.Tensor, axes: list[Axis], weight_shape, groups: int):
    """The adjoint of `filter_transform`'s stacking: ``(prod chunk, g, K/g, C'/g)`` — the
    gradient of each (phase, chunk) channel's taps — back to ``weight_shape``."""
    nd = len(axes)
    k_out, c_g = weight_shape[:2]
    w = dw.permute(1, 2, 3, 0).reshape(k_out, -1, math.prod(a.chunk for a in axes))
    # (K, [kappa, c] per axis, Cg, [u] per axis) -> (K, Cg, [c, u, kappa] per axis)
    split = [k_out]
    for a in axes:
        split += [a.phases, a.chunks]
    split += [c_g] + [a.chunk for a in axes]
    w = w.reshape(split)
    order = [0, 1 + 2 * nd]
    for i in range(nd):
        order += [2 + 2 * i, 2 + 2 * nd + i, 1 + 2 * i]
    w = w.permute(order)
    full = w.new_zeros(k_out, c_g, *(v for a in axes for v in (a.chunks, a.chunk, a.stride)))
    index = [slice(None), slice(None)]
    for a in axes:
        index += [slice(None), slice(None), slice(0, a.phases)]
    full[tuple(index)] = w
    full = full.reshape(k_out, c_g, *(a.chunks * a.chunk * a.stride for a in axes))
    return full[(slice(None), slice(None), *(slice(0, t) for t in weight_shape[2:]))]
