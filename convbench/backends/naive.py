"""Direct convolution: the textbook sums over kernel taps, for the output and both gradients.

For each kernel tap (a Python loop over ``prod(kernel)`` taps only) the strided, dilated slice
of the padded input that the tap touches — one element per output position — is

* **forward**: contracted with that tap's weights over the input channels of each group and
  accumulated into the output, ``y += w[:, :, tap] · x_tap``;
* **data gradient**: the tap's weights, transposed, applied to the upstream gradient and
  accumulated into that same slice of a zero padded-input-sized buffer,
  ``dx_tap += w[:, :, tap]ᵀ · dy`` (then the padding is cropped);
* **weight gradient**: the upstream gradient contracted with the slice over images and
  positions, ``dw[:, :, tap] = Σ dy · x_tapᵀ``; dL/db is dy summed.

Everything else — batch, channels, output positions — is vectorised. No column buffer is
built: extra memory is one tap-slice.
"""

from __future__ import annotations

import itertools

import torch

from convbench.backends import Backend, Passes, register
from convbench.backends.ops import add_bias, bias_grad, crop_padding, pad_input
from convbench.problem.spec import ConvArgs


def tap_slice(xp: torch.Tensor, args: ConvArgs, tap: tuple[int, ...]) -> torch.Tensor:
    """The view of the padded input ``xp`` that kernel tap ``tap`` multiplies, one element
    per output position: ``xp[..., t*d : t*d + s*(out-1) + 1 : s]`` in every spatial dim."""
    index: list[slice] = [slice(None), slice(None)]
    for t, d, s, o in zip(tap, args.dilation, args.stride, args.out_spatial, strict=True):
        start = t * d
        index.append(slice(start, start + s * (o - 1) + 1, s))
    return xp[tuple(index)]


def _taps(args: ConvArgs):
    return itertools.product(*(range(k) for k in args.kernel))


class NaivePasses(Passes):
    backward_method = "direct sums over kernel taps (scatter into the padded input; GEMM per tap)"

    def __init__(self, args, weight, bias):
        super().__init__(args, weight, bias)
        g = args.groups
        self.c_g = args.in_channels // g
        self.refresh(set())

    def refresh(self, prepared):
        g = self.args.groups
        # (g, K/g, C/g, *kernel): one weight block per group (a view: nothing to recompute).
        self.w = self.weight.reshape(g, self.args.out_channels // g, self.c_g, *self.args.kernel)

    def forward(self, x):
        args, g = self.args, self.args.groups
        n = x.shape[0]
        xp = pad_input(x, args)
        out = None
        for tap in _taps(args):
            xs = tap_slice(xp, args, tap).reshape(n, g, self.c_g, -1)  # (N, g, C/g, P)
            wt = self.w[(slice(None), slice(None), slice(None), *tap)]  # (g, K/g, C/g)
            term = torch.matmul(wt, xs)  # (N, g, K/g, P)
            out = term if out is None else out + term
        y = out.reshape(n, args.out_channels, *args.out_spatial)
        return add_bias(y, self.bias)

    def backward_data(self, dy):
        args, g = self.args, self.args.groups
        n = dy.shape[0]
        padded = [s + lo + hi for s, (lo, hi) in zip(args.spatial, args.padding, strict=True)]
        dxp = torch.zeros(n, args.in_channels, *padded, dtype=dy.dtype, device=dy.device)
        dyg = dy.reshape(n, g, args.out_channels // g, -1)  # (N, g, K/g, P)
        for tap in _taps(args):
            wt = self.w[(slice(None), slice(None), slice(None), *tap)]  # (g, K/g, C/g)
            term = torch.matmul(wt.transpose(1, 2), dyg)  # (N, g, C/g, P)
            view = tap_slice(dxp, args, tap)
            view += term.reshape(view.shape)
        return crop_padding(dxp, args).contiguous()

    def backward_weight(self, x, dy):
        args, g = self.args, self.args.groups
        n = x.shape[0]
        k_g = args.out_channels // g
        xp = pad_input(x, args)
        # (g, K/g, N·P): images and positions are the contraction dim of every tap's GEMM.
        dyg = dy.reshape(n, g, k_g, -1).permute(1, 2, 0, 3).reshape(g, k_g, -1)
        dw = torch.empty_like(self.w)
        for tap in _taps(args):
            xs = tap_slice(xp, args, tap).reshape(n, g, self.c_g, -1)
            xs = xs.permute(1, 0, 3, 2).reshape(g, -1, self.c_g)  # (g, N·P, C/g)
            dw[(slice(None), slice(None), slice(None), *tap)] = torch.bmm(dyg, xs)
        return dw.reshape(self.weight.shape), bias_grad(dy, self.bias)


@register
class NaiveBackend(Backend):
    name = "naive"
    description = "direct sum over kernel taps, vectorised over batch, channels and positions"
    backward_method = NaivePasses.backward_method

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type not in ("cpu", "cuda", "meta"):
            return f"naive: device {args.device.type} not supported"
        return None

    def plan(self, args, weight, bias):
        return NaivePasses(args, weight, bias)
