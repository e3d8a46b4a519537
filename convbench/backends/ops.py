"""Tensor helpers the from-scratch backends share: padding and its adjoint, bias and its
gradient. Batched tensors ``(N, C, *spatial)`` throughout."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convbench.problem.spec import ConvArgs


def pad_input(x: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    """Zero-pad the spatial dims of a batched input by the explicit (before, after) pairs."""
    pads: list[int] = []
    for lo, hi in reversed(args.padding):  # F.pad takes the last dim first
        pads += [lo, hi]
    if not any(pads):
        return x
    return F.pad(x, pads)


def crop_padding(xp: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    """The adjoint of `pad_input`: the input's own positions of a padded-size tensor (a view)."""
    index = [slice(None), slice(None)]
    index += [slice(lo, lo + n) for (lo, _), n in zip(args.padding, args.spatial, strict=True)]
    return xp[tuple(index)]


def add_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return y
    return y + bias.view(1, -1, *([1] * (y.dim() - 2)))


def bias_grad(dy: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """dL/db: the output gradient summed over images and positions (None without a bias)."""
    if bias is None:
        return None
    dims = [0, *range(2, dy.dim())]
    accumulate = torch.float64 if dy.dtype == torch.float64 else torch.float32
    return dy.sum(dims, dtype=accumulate).to(bias.dtype)
