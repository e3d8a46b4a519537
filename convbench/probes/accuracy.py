"""How far a convolution's output is from a float64 reference, and how far is acceptable.

The error measure is relative to the output's scale, not element-wise:
``rel_err = max|out - ref| / max|ref|``. Element-wise relative error explodes where the exact
result is near zero (which convolutions of zero-mean data produce everywhere), while error
relative to the largest magnitude is what a dtype's rounding actually bounds. Everything is
computed in float64 on the CPU.

`TOLERANCE` holds the default limit on ``rel_err`` per dtype: the rule "within the dtype's
tolerance" used by the runner and the backend tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F

TOLERANCE: Mapping[torch.dtype, float] = MappingProxyType(
    {
        torch.float64: 1e-10,
        torch.float32: 1e-4,
        torch.float16: 1e-2,
        torch.bfloat16: 5e-2,
    }
)


@dataclass(frozen=True)
class Accuracy:
    """Error of an output against its reference.

    ``max_abs_err = max|out - ref|``; ``rel_err = max_abs_err / max|ref|`` (0 if both are 0,
    inf if only ``ref`` is all zeros). NaN or inf in the output propagate into both, so such an
    output is never within tolerance.
    """

    max_abs_err: float
    rel_err: float

    def within(self, dtype: torch.dtype, tolerance_map: Mapping = TOLERANCE) -> bool:
        """Whether ``rel_err`` is within the default tolerance of ``dtype``."""
        return self.rel_err <= tolerance(dtype, tolerance_map)


def tolerance(dtype: torch.dtype, tolerance_map: Mapping = TOLERANCE) -> float:
    """The limit on ``rel_err`` for ``dtype``; ValueError naming the dtype if there is none."""
    try:
        return tolerance_map[dtype]
    except KeyError:
        known = ", ".join(str(d) for d in tolerance_map)
        raise ValueError(f"no accuracy tolerance for dtype {dtype}; known: {known}") from None


def accuracy(out: torch.Tensor, ref: torch.Tensor) -> Accuracy:
    """Compare ``out`` with ``ref`` in float64 on the CPU (shapes must match)."""
    if tuple(out.shape) != tuple(ref.shape):
        raise ValueError(
            f"output shape {tuple(out.shape)} does not match reference shape {tuple(ref.shape)}"
        )
    if out.numel() == 0:
        return Accuracy(0.0, 0.0)
    out64 = out.detach().to(device="cpu", dtype=torch.float64)
    ref64 = ref.detach().to(device="cpu", dtype=torch.float64)
    max_abs_err = (out64 - ref64).abs().max().item()
    scale = ref64.abs().max().item()
    if math.isnan(max_abs_err):
        rel_err = math.nan
    elif scale > 0:
        rel_err = max_abs_err / scale
    else:
        rel_err = 0.0 if max_abs_err == 0 else math.inf
    return Accuracy(max_abs_err, rel_err)


def reference_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """The accuracy reference: ``F.conv1d``/``F.conv2d`` (by the weight's rank) in float64 on
    the CPU, from the same (possibly low-precision) values the backend was given."""

    def to64(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device="cpu", dtype=torch.float64)

    if weight.dim() not in (3, 4):
        raise ValueError(f"expected a 3-D or 4-D weight, got {weight.dim()}-D")
    conv = F.conv1d if weight.dim() == 3 else F.conv2d
    return conv(
        to64(input),
        to64(weight),
        None if bias is None else to64(bias),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
