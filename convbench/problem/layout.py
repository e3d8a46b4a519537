"""Tensor layouts: what the ``layouts`` axis means for a tensor (`convbench.problem.axes`).

* ``contiguous`` — PyTorch's default strides: NCHW for a 2-D convolution's input, NCL for a
  1-D one, and (K, C, kh, kw) for a weight.
* ``channels_last`` — the channels innermost: NHWC (``torch.channels_last``) for 4-D tensors;
  for 3-D tensors the NLC strides a sequence model hands ``conv1d`` after
  ``x.transpose(1, 2)`` (PyTorch has no memory-format name for them).

`to_layout` converts a tensor (a no-op where it is already in that layout) and `layout_of`
names the layout a tensor is in: where its sizes make both layouts the same strides (one
channel, or a 1×1 image), it is ``contiguous``; strides that are neither are ``strided``.
"""

from __future__ import annotations

import torch

from convbench.problem.axes import LAYOUTS

#: What `layout_of` says of a tensor in neither layout (a slice, a transposed view).
STRIDED = "strided"


def _check(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")


def to_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t`` (3-D or 4-D; others are returned as they are) in ``layout``; ``t`` itself where
    it already is."""
    _check(layout)
    if t.dim() == 4:
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        return t.contiguous(memory_format=fmt)
    if t.dim() == 3:
        if layout == "contiguous":
            return t.contiguous()
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    return t


def layout_of(t: torch.Tensor) -> str:
    """The layout ``t`` is in: ``contiguous`` (also where both layouts give its strides),
    ``channels_last``, or `STRIDED` (neither)."""
    if t.is_contiguous():
        return "contiguous"
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    if t.dim() == 3 and t.transpose(1, 2).is_contiguous():
        return "channels_last"
    return STRIDED


__all__ = ["LAYOUTS", "STRIDED", "layout_of", "to_layout"]
