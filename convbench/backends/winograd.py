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

The filter transform ``U = G w G^T`` is per-weight work done in `plan`, rounded once to the
compute dtype. The plan owns the buffers of steps 1–6 and reuses them across
calls when autograd is not recording (as a cuDNN workspace; it saves the page faults of
fresh multi-megabyte allocations); under autograd every step allocates, so gradients flow.

float16/bfloat16 are computed in float32 internally and cast back at the end.
"""

from __future__ import annotations

import math

import torch

from convbench.backends import Backend, Passes, register
from convbench.backends.ops import bias_grad
from convbench.backends.transpose import data_gradient_phases, phase_weight, transposed_weight
from convbench.backends.wincnn import winograd_transform
from convbench.backends.winograd_tiles import (
    Axis,
    Workspace,
    compute_dtype,
    filter_transform,
    gather_tiles,
    gradient_tiles,
    kron,
    matrix,
    pad_channels_last,
    plan_axis,
    restack_weight,
    transform,
    untile,
)
from convbench.problem.spec import ConvArgs

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
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

    def __init__(self, backend, args, weight, bias, axes: list[Axis]):
        super().__init__(args, weight, bias)
        self.backend, self.axes = backend, axes
        self.cdtype = cdtype = compute_dtype(args.dtype)
        forms = [winograd_transform(a.m, a.chunk) for a in axes]
        self.bts = [matrix(f.BT, args.device).to(cdtype) for f in forms]
        self.ats = [matrix(f.AT, args.device).to(cdtype) for f in forms]
        gk = kron([matrix(f.G, args.device) for f in forms])  # float64
        # (A*g, C'/g, K/g)
        self.u = filter_transform(self.weight, axes, gk, args.groups).to(cdtype).contiguous()
        self.depthwise = self.u.shape[1] == 1
        self.cbias = None if self.bias is None else self.bias.to(cdtype)
        self.ws = Workspace(cdtype, args.device)
        self.prepared = {
            "U": self.u,
            "m": tuple(a.m for a in axes),
            "r": tuple(a.chunk for a in axes),
            "alpha": tuple(a.alpha for a in axes),
        }
        self._data_phases: list | None = None
        self._weight_forms: tuple | None = None

    # -- forward -------------------------------------------------------------------------
    def _tiles(self, x: torch.Tensor, keep: bool) -> torch.Tensor:
        """Steps 1–3: the transformed input tiles ``V (A*g, P, C'/g)``. ``keep``: in fresh
        memory (kept past the next call), not in the plan's workspace."""
        self.ws.recording = keep
        try:
            xp = pad_channels_last(x, self.args, self.axes, self.ws)
            d = gather_tiles(xp, self.axes, self.args.groups, self.ws)  # (A, g*P*C'/g)
            v = transform(self.bts, d, self.ws, "in")
        finally:
            self.ws.recording = False
        return v.reshape(self.u.shape[0], -1, self.u.shape[1])

    def _output(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        args, u, ws = self.args, self.u, self.ws
        gemm_shape = (u.shape[0], v.shape[1], u.shape[2])  # (A*g, P, K/g)
        if self.depthwise:
            mm = torch.mul(v, u, out=ws.out("gemm", gemm_shape))
        else:
            mm = torch.bmm(v, u, out=ws.out("gemm", gemm_shape))
        y = untile(
            transform(self.ats, mm, ws, "out"), self.axes, args.out_channels, args.groups, ws
        )
        fmt = torch.contiguous_format  # like torch: NCHW out unless the input is NHWC
        if x.dim() == 4 and not x.is_contiguous():
            if x.is_contiguous(memory_format=torch.channels_last):
                fmt = torch.channels_last
        out = torch.empty(y.shape, dtype=args.dtype, device=y.device, memory_format=fmt)
        if self.cbias is None:
            return out.copy_(y)
        return torch.add(y, self.cbias.view(1, -1, *[1] * args.nd), out=out)

    def forward(self, x):
        return self._output(self._tiles(x, keep=False), x)

    def forward_train(self, x):
        v = self._tiles(x, keep=True)
        return self._output(v, x), v

    # -- data gradient -------------------------------------------------------------------------
    def prepare_pass(self, direction):
        if direction == "backward_data" and self._data_phases is None:
            transposed = transposed_weight(self.weight, self.args.groups)
            self._data_phases = []
            for phase in data_gradient_phases(self.args):
                w = phase_weight(transposed, phase)
                self._data_phases.append((phase, self.backend.plan(phase.args, w, None)))
        if direction == "backward_weight" and self._weight_forms is None:
            forms = [winograd_transform(a.chunk, a.m) for a in self.axes]
            device = self.args.device
            g2 = [matrix(f.G, device).to(self.cdtype) for f in forms]
            at2 = [matrix(f.AT, device).to(self.cdtype) for f in forms]
            self._weight_forms = (g2, at2)

    def backward_data(self, dy):
        self.prepare_pass("backward_data")
        phases = self._data_phases
        if len(phases) == 1 and phases[0][0].covers_all:
            phase, passes = phases[0]
            return passes.forward(phase.crop(dy))
        dx = torch.zeros(self.args.input_shape, dtype=self.args.dtype, device=dy.device)
        for phase, passes in phases:
            phase.scatter(dx, passes.forward(phase.crop(dy)))
        return dx

    # -- weight gradient -----------------------------------------------------------------------
    def _weight_grad(self, v: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """``dW' = AT' [Σ_tiles (G' dy) ⊙ V]``: F(r', m) on every tile, summed in the
        transformed domain by one batched GEMM, then restacked into the weight's shape."""
        self.prepare_pass("backward_weight")
        g2, at2 = self._weight_forms
        args, g, ws = self.args, self.args.groups, self.ws
        e = gradient_tiles(dy.to(self.cdtype), self.axes, g, ws)  # (prod m, g*P*K/g)
        e = transform(g2, e, ws, "dyin").reshape(v.shape[0], v.shape[1], -1)  # (A*g, P, K/g)
        if self.depthwise and e.shape[2] == 1:
            mm = (e * v).sum(1, keepdim=True)  # (A*g, 1, 1)
        else:
            mm = torch.bmm(e.transpose(1, 2), v)  # (A*g, K/g, C'/g)
        dw = transform(at2, mm.reshape(math.prod(a.alpha for a in self.axes), -1), ws, "dwout")
        k_g = args.out_channels // g
        dw = dw.reshape(-1, g, k_g, mm.shape[2])  # (prod chunk, g, K/g, C'/g)
        return restack_weight(dw, self.axes, self.weight.shape, g).to(args.dtype)

    def backward_weight(self, x, dy):
        return self._weight_grad(self._tiles(x, keep=False), dy), bias_grad(dy, self.bias)

    def backward(self, x, dy, saved=None, need_data=True, need_weight=True):
        dx = self.backward_data(dy) if need_data else None
        dw = db = None
        if need_weight:
            v = saved if saved is not None else self._tiles(x, keep=False)
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

    def check_pass(self, args: ConvArgs, direction: str) -> str | None:
        if direction == "backward_data":
            for phase in data_gradient_phases(args):
                reason = self.check(phase.args)
                if reason is not None:
                    return f"{reason} (data gradient)"
        return None

    def plan(self, args, weight, bias):
        axes = self.axes(args)
        assert not isinstance(axes, str), axes
        return WinogradPasses(self, args, weight, bias, axes)


def winograd(m: int | tuple[int, ...] | str = "auto") -> WinogradBackend:
    """A Winograd backend with output tile ``m`` (e.g. ``winograd(4)`` computes F(4, 3) on
    3×3 kernels); ``"auto"`` is the registered default. Not registered itself."""
    return WinogradBackend(m)
