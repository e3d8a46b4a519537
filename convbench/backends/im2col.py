"""im2col + GEMM (Chellapilla et al. 2006; Caffe's approach).

The padded input is unrolled into the explicit column (Toeplitz) matrix — for every output
position, the ``C/g × prod(kernel)`` input values its receptive field covers — and the
convolution becomes one GEMM per group, batched over images and groups:
``(g, K/g, C/g·prod(k)) @ (N, g, C/g·prod(k), P) -> (N, g, K/g, P)``.
The column matrix costs ``N·C·prod(kernel)·P`` elements of extra memory, which the runner's
memory probe shows.
"""

from __future__ import annotations

import math

import torch

from convbench.backends import Backend, add_bias, pad_input, register
from convbench.spec import ConvArgs


def columns(x: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    """Column matrix ``(N, C, *kernel, *out_spatial)`` built from strided windows (views),
    materialised by the caller's reshape."""
    xp = pad_input(x, args)
    cols = xp
    for dim, (k, s, d) in enumerate(zip(args.kernel, args.stride, args.dilation, strict=True)):
        span = d * (k - 1) + 1
        # unfold appends a window axis of length `span`; keep every d-th element of it.
        cols = cols.unfold(2 + dim, span, s)[..., ::d]
    # cols: (N, C, *out_spatial, *kernel) -> (N, C, *kernel, *out_spatial)
    nd = args.nd
    order = [0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd)]
    return cols.permute(order)


@register
class Im2colBackend(Backend):
    name = "im2col"
    description = "explicit column matrix, then one batched GEMM per group"

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type not in ("cpu", "cuda", "meta"):
            return f"im2col: device {args.device.type} not supported"
        return None

    def workspace_bytes(self, args: ConvArgs) -> int:
        itemsize = torch.empty((), dtype=args.dtype).element_size()
        cols = args.batch * args.in_channels * math.prod(args.kernel) * math.prod(args.out_spatial)
        return cols * itemsize

    def plan(self, args, weight, bias):
        g = args.groups
        k_out = args.out_channels
        w = weight.reshape(g, k_out // g, -1)  # (g, K/g, C/g * prod(k))

        def run(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            cols = columns(x, args).reshape(n, g, w.shape[-1], -1)  # the copy: im2col
            y = torch.matmul(w, cols)  # (N, g, K/g, P)
            return add_bias(y.reshape(n, k_out, *args.out_spatial), bias)

        return run, {}
