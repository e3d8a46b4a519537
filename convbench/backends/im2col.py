"""im2col + GEMM (Chellapilla et al. 2006; Caffe's approach), for the output and both
gradients.

The padded input is unrolled into the explicit column (Toeplitz) matrix — for every output
position, the ``C/g × prod(kernel)`` input values its receptive field covers — and each pass
becomes GEMMs batched over images and groups:

* **forward**: ``Y = W · cols``, ``(g, K/g, C/g·∏k) @ (N, g, C/g·∏k, P)``;
* **data gradient**: ``dcols = Wᵀ · dY``, then col2im (`torch.nn.functional.fold`) adds every
  column back onto the input positions it came from (overlap-add), and the padding is cropped;
* **weight gradient**: ``dW = dY · colsᵀ`` with images and positions as the contraction dim,
  one GEMM per group; the columns are rebuilt from the input (as Caffe does) rather than kept
  from the forward, which would hold ``C·∏k·P`` elements per image for the whole step.

The column matrix costs ``C·prod(kernel)·P`` elements per image. To keep that bounded, every
pass works on blocks of images and, when a single image's matrix is still too large, blocks of
output rows (the first spatial dim), each built from just the input rows its receptive fields
cover. ``COLUMN_BUDGET_BYTES`` sets the bound. For a 1×1, stride-1, unpadded convolution the
column matrix *is* the input, so no copy is made.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from convbench.backends import Backend, Passes, register
from convbench.backends.ops import add_bias, bias_grad, crop_padding, pad_input
from convbench.problem.spec import ConvArgs

COLUMN_BUDGET_BYTES = 256 * 2**20


def columns(xp: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    """Column matrix ``(N, C, *kernel, *out_spatial)`` of an already padded input, built from
    strided windows (views); the caller's reshape materialises it."""
    cols = xp
    for dim, (k, s, d) in enumerate(zip(args.kernel, args.stride, args.dilation, strict=True)):
        span = d * (k - 1) + 1
        # unfold appends a window axis of length `span`; keep every d-th element of it.
        cols = cols.unfold(2 + dim, span, s)[..., ::d]
    # cols: (N, C, *out_spatial, *kernel) -> (N, C, *kernel, *out_spatial)
    nd = args.nd
    order = [0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd)]
    return cols.permute(order)


def _blocks(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def identity_columns(args: ConvArgs) -> bool:
    """A 1×1, stride-1, unpadded convolution: the column matrix is the input itself."""
    return (
        all(k == 1 for k in args.kernel)
        and all(s == 1 for s in args.stride)
        and not any(lo or hi for lo, hi in args.padding)
    )


def image_column_bytes(args: ConvArgs) -> int:
    itemsize = torch.empty((), dtype=args.dtype).element_size()
    return args.in_channels * math.prod(args.kernel) * math.prod(args.out_spatial) * itemsize


class Im2colPasses(Passes):
    backward_method = "GEMM then col2im (fold) for the data; GEMM with the columns for the weight"

    def __init__(self, args, weight, bias):
        super().__init__(args, weight, bias)
        g = args.groups
        self.k_g = args.out_channels // g
        self.refresh(set())
        per_image = image_column_bytes(args)
        self.batch_block = max(1, COLUMN_BUDGET_BYTES // max(per_image, 1))
        out_rows = args.out_spatial[0]
        self.row_block = out_rows
        if per_image > COLUMN_BUDGET_BYTES:  # one image is too big: block output rows too
            self.row_block = max(1, out_rows * COLUMN_BUDGET_BYTES // per_image)
        self.prepared = {"batch_block": self.batch_block, "row_block": self.row_block}

    def refresh(self, prepared):
        self.w = self.weight.reshape(self.args.groups, self.k_g, -1)  # (g, K/g, C/g·∏k): a view

    # -- blocking ----------------------------------------------------------------------------
    def _windows(self, n: int):
        """(images, output rows, padded input rows) of every block, in order."""
        s0, d0, k0 = self.args.stride[0], self.args.dilation[0], self.args.kernel[0]
        span0 = d0 * (k0 - 1) + 1
        for b0, b1 in _blocks(n, self.batch_block):
            for r0, r1 in _blocks(self.args.out_spatial[0], self.row_block):
                yield (b0, b1), (r0, r1), (r0 * s0, (r1 - 1) * s0 + span0)

    # -- passes ------------------------------------------------------------------------------
    def forward(self, x):
        args, g = self.args, self.args.groups
        n = x.shape[0]
        if identity_columns(args):
            y = torch.matmul(self.w, x.reshape(n, g, self.w.shape[-1], -1))
            return add_bias(y.reshape(n, args.out_channels, *args.out_spatial), self.bias)
        xp = pad_input(x, args)
        pieces = []
        for (b0, b1), (r0, r1), (i0, i1) in self._windows(n):
            cols = columns(xp[b0:b1, :, i0:i1], args)  # the im2col copy happens in reshape:
            cols = cols.reshape(b1 - b0, g, self.w.shape[-1], -1)
            y = torch.matmul(self.w, cols)  # (n, g, K/g, P)
            pieces.append(y.reshape(b1 - b0, args.out_channels, r1 - r0, *args.out_spatial[1:]))
        y = pieces[0] if len(pieces) == 1 else self._join(pieces, n)
        return add_bias(y, self.bias)

    def _join(self, pieces, n):
        rows_per_batch = len(_blocks(self.args.out_spatial[0], self.row_block))
        batches = [
            torch.cat(pieces[i : i + rows_per_batch], dim=2)
            for i in range(0, len(pieces), rows_per_batch)
        ]
        return torch.cat(batches, dim=0)

    def backward_data(self, dy):
        args, g = self.args, self.args.groups
        n = dy.shape[0]
        wt = self.w.transpose(1, 2)  # (g, C/g·∏k, K/g)
        if identity_columns(args):
            dx = torch.matmul(wt, dy.reshape(n, g, self.k_g, -1))
            return dx.reshape(n, args.in_channels, *args.spatial)
        padded = [s + lo + hi for s, (lo, hi) in zip(args.spatial, args.padding, strict=True)]
        dxp = torch.zeros(n, args.in_channels, *padded, dtype=dy.dtype, device=dy.device)
        for (b0, b1), (r0, r1), (i0, i1) in self._windows(n):
            block = dy[b0:b1, :, r0:r1].reshape(b1 - b0, g, self.k_g, -1)
            dcols = torch.matmul(wt, block)  # (n, g, C/g·∏k, P)
            dxp[b0:b1, :, i0:i1] += self._col2im(dcols, b1 - b0, r1 - r0, i1 - i0)
        return crop_padding(dxp, args).contiguous()

    def _col2im(self, dcols, n, rows, window):
        """Sum every column back onto its input positions: `F.fold` (2-D; 1-D as height 1)."""
        a = self.args
        cols = dcols.reshape(n, a.in_channels * math.prod(a.kernel), -1)
        if a.nd == 1:
            out = F.fold(
                cols, (1, window), (1, a.kernel[0]), (1, a.dilation[0]), 0, (1, a.stride[0])
            )
            return out.squeeze(2)
        width = a.spatial[1] + sum(a.padding[1])
        return F.fold(cols, (window, width), a.kernel, a.dilation, 0, a.stride)

    def backward_weight(self, x, dy):
        args, g = self.args, self.args.groups
        n = x.shape[0]
        c_g = args.in_channels // g
        if identity_columns(args):
            xs = x.reshape(n, g, c_g, -1).permute(1, 0, 3, 2).reshape(g, -1, c_g)
            dyg = dy.reshape(n, g, self.k_g, -1).permute(1, 2, 0, 3).reshape(g, self.k_g, -1)
            return torch.bmm(dyg, xs).reshape(self.weight.shape), bias_grad(dy, self.bias)
        xp = pad_input(x, args)
        dw = None
        nk = len(args.kernel)
        for (b0, b1), (r0, r1), (i0, i1) in self._windows(n):
            cols = columns(xp[b0:b1, :, i0:i1], args)  # (n, C, *k, *out)
            cols = cols.reshape(b1 - b0, g, c_g, *cols.shape[2:])
            # (g, C/g, *k, n, *out): images and positions last, so they are the GEMM's inner dim
            order = [1, 2, *range(3, 3 + nk), 0, *range(3 + nk, 3 + 2 * nk)]
            cols = cols.permute(order).reshape(g, -1, (b1 - b0) * math.prod(cols.shape[3 + nk :]))
            block = dy[b0:b1, :, r0:r1].reshape(b1 - b0, g, self.k_g, -1)
            block = block.permute(1, 2, 0, 3).reshape(g, self.k_g, -1)
            term = torch.bmm(block, cols.transpose(1, 2))  # (g, K/g, C/g·∏k)
            dw = term if dw is None else dw + term
        return dw.reshape(self.weight.shape), bias_grad(dy, self.bias)


@register
class Im2colBackend(Backend):
    name = "im2col"
    description = "explicit column matrix (batch-blocked), then one batched GEMM per group"
    backward_method = Im2colPasses.backward_method

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type not in ("cpu", "cuda", "meta"):
            return f"im2col: device {args.device.type} not supported"
        return None

    def workspace_bytes(self, args: ConvArgs) -> int:
        if identity_columns(args):
            return 0
        return min(image_column_bytes(args) * args.batch, COLUMN_BUDGET_BYTES)

    def plan(self, args, weight, bias):
        return Im2colPasses(args, weight, bias)
