"""How far a convolution's output is from a float64 reference, and how far is acceptable.

The error measure is relative to the output's scale, not element-wise:
``rel_err = max|out - ref| / max|ref|``. Element-wise relative error explodes where the exact
result is near zero (which convolutions of zero-mean data produce everywhere), while error
relative to the largest magnitude is what a dtype's rounding actually bounds. Everything is
computed in float64 on the CPU.

The limit on ``rel_err`` per dtype — "within the dtype's tolerance" — is
`convbench.problem.axes.TOLERANCE`; the reference itself is `convbench.measure.reference`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from convbench.problem.axes import within_tolerance


@dataclass(frozen=True)
class Accuracy:
    """Error of an output against its reference.

    ``max_abs_err = max|out - ref|``; ``rel_err = max_abs_err / max|ref|`` (0 if both are 0,
    inf if only ``ref`` is all zeros). NaN or inf in the output propagate into both, so such an
    output is never within tolerance.
    """

    max_abs_err: float
    rel_err: float

    def within(self, dtype: torch.dtype | str) -> bool:
        """Whether ``rel_err`` is within the tolerance of ``dtype``."""
        return within_tolerance(self.rel_err, dtype)


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
