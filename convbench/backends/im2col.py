"""im2col + GEMM (Chellapilla et al. 2006; Caffe's approach).

The padded input is unrolled into the explicit column (Toeplitz) matrix — for every output
position, the ``C/g × prod(kernel)`` input values its receptive field covers — and the
convolution becomes one GEMM per group, batched over images and groups:
``(g, K/g, C/g·prod(k)) @ (N, g, C/g·prod(k), P) -> (N, g, K/g, P)``.

The column matrix costs ``C·prod(kernel)·P`` elements per image. To keep that bounded, the
batch is processed in blocks, and when a single image's matrix is still too large, blocks of
output rows (the first spatial dim): each block's columns are built from just the input rows
its receptive fields cover. ``COLUMN_BUDGET_BYTES`` sets the bound. For a 1×1, stride-1,
unpadded convolution the column matrix *is* the input, so no copy is made.
"""

from __future__ import annotations

import math

import torch

from convbench.backends import Backend, add_bias, pad_input, register
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


@register
class Im2colBackend(Backend):
    name = "im2col"
    description = "explicit column matrix (batch-blocked), then one batched GEMM per group"

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type not in ("cpu", "cuda", "meta"):
            return f"im2col: device {args.device.type} not supported"
        return None

    @staticmethod
    def _identity_columns(args: ConvArgs) -> bool:
        return (
            all(k == 1 for k in args.kernel)
            and all(s == 1 for s in args.stride)
            and not any(lo or hi for lo, hi in args.padding)
        )

    def _image_column_bytes(self, args: ConvArgs) -> int:
        itemsize = torch.empty((), dtype=args.dtype).element_size()
        return args.in_channels * math.prod(args.kernel) * math.prod(args.out_spatial) * itemsize

    def workspace_bytes(self, args: ConvArgs) -> int:
        if self._identity_columns(args):
            return 0
        return min(self._image_column_bytes(args) * args.batch, COLUMN_BUDGET_BYTES)

    def plan(self, args, weight, bias):
        g = args.groups
        k_out = args.out_channels
        w = weight.reshape(g, k_out // g, -1)  # (g, K/g, C/g * prod(k))
        per_image = self._image_column_bytes(args)
        batch_block = max(1, COLUMN_BUDGET_BYTES // max(per_image, 1))
        out_rows = args.out_spatial[0]
        row_block = out_rows
        if per_image > COLUMN_BUDGET_BYTES:  # one image is too big: block output rows too
            row_block = max(1, out_rows * COLUMN_BUDGET_BYTES // per_image)
        s0, d0, k0 = args.stride[0], args.dilation[0], args.kernel[0]
        span0 = d0 * (k0 - 1) + 1

        def gemm(xp_block: torch.Tensor, rows: int) -> torch.Tensor:
            n = xp_block.shape[0]
            cols = columns(xp_block, args).reshape(n, g, w.shape[-1], -1)  # the im2col copy
            y = torch.matmul(w, cols)  # (n, g, K/g, P)
            return y.reshape(n, k_out, rows, *args.out_spatial[1:])

        def run(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            if self._identity_columns(args):
                y = torch.matmul(w, x.reshape(n, g, w.shape[-1], -1))
                return add_bias(y.reshape(n, k_out, *args.out_spatial), bias)
            xp = pad_input(x, args)
            pieces = []
            for b0, b1 in _blocks(n, batch_block):
                if row_block == out_rows:
                    pieces.append(gemm(xp[b0:b1], out_rows))
                    continue
                row_pieces = []
                for r0, r1 in _blocks(out_rows, row_block):
                    # input rows covered by output rows r0..r1-1
                    window = xp[b0:b1, :, r0 * s0 : (r1 - 1) * s0 + span0]
                    row_pieces.append(gemm(window, r1 - r0))
                pieces.append(torch.cat(row_pieces, dim=2))
            y = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
            return add_bias(y, bias)

        return run, {"batch_block": batch_block, "row_block": row_block}
