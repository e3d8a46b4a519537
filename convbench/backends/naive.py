"""Direct convolution: the textbook sum over kernel taps.

For each kernel tap (a Python loop over ``prod(kernel)`` taps only) the strided, dilated slice
of the padded input that the tap touches is contracted with that tap's weights over the input
channels of each group, and accumulated into the output. Everything else — batch, channels,
output positions — is vectorised. No column buffer is built: extra memory is one tap-slice.
"""

from __future__ import annotations

import itertools

import torch

from convbench.backends import Backend, add_bias, pad_input, register
from convbench.problem.spec import ConvArgs


def tap_slice(xp: torch.Tensor, args: ConvArgs, tap: tuple[int, ...]) -> torch.Tensor:
    """The view of the padded input ``xp`` that kernel tap ``tap`` multiplies, one element
    per output position: ``xp[..., t*d : t*d + s*(out-1) + 1 : s]`` in every spatial dim."""
    index: list[slice] = [slice(None), slice(None)]
    for t, d, s, o in zip(tap, args.dilation, args.stride, args.out_spatial, strict=True):
        start = t * d
        index.append(slice(start, start + s * (o - 1) + 1, s))
    return xp[tuple(index)]


@register
class NaiveBackend(Backend):
    name = "naive"
    description = "direct sum over kernel taps, vectorised over batch, channels and positions"

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type not in ("cpu", "cuda", "meta"):
            return f"naive: device {args.device.type} not supported"
        return None

    def plan(self, args, weight, bias):
        g = args.groups
        k_out = args.out_channels
        c_g = args.in_channels // g
        # (g, K/g, C/g, *kernel): one weight block per group.
        w = weight.reshape(g, k_out // g, c_g, *args.kernel)

        def run(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            xp = pad_input(x, args)
            out = None
            for tap in itertools.product(*(range(k) for k in args.kernel)):
                xs = tap_slice(xp, args, tap)  # (N, C, *out_spatial)
                xs = xs.reshape(n, g, c_g, -1)  # (N, g, C/g, P)
                wt = w[(slice(None), slice(None), slice(None), *tap)]  # (g, K/g, C/g)
                term = torch.matmul(wt, xs)  # (N, g, K/g, P)
                out = term if out is None else out + term
            y = out.reshape(n, k_out, *args.out_spatial)
            return add_bias(y, bias)

        return run, {}
