"""The float64 reference every error column is measured against: PyTorch's own convolution
(`F.conv1d`/`F.conv2d`) in float64 on the CPU, from the same — possibly low-precision —
values the backend was given, so that rounding the inputs is not counted as the backend's
error.

Each direction (`convbench.measure.passes`) is compared with what it computes: ``forward``
the output; ``backward_data`` dL/dx; ``backward_weight`` dL/dw (and dL/db); ``backward``
both gradients; ``train`` the output and both gradients — each for a given upstream gradient
dy. The worst of the parts is reported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convbench.problem.axes import DIRECTIONS


def _to64(t: torch.Tensor | None, grad: bool = False) -> torch.Tensor | None:
    if t is None:
        return None
    return t.detach().to(device="cpu", dtype=torch.float64).requires_grad_(grad)


def reference_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv1d``/``F.conv2d`` (by the weight's rank) in float64 on the CPU."""
    if weight.dim() not in (3, 4):
        raise ValueError(f"expected a 3-D or 4-D weight, got {weight.dim()}-D")
    conv = F.conv1d if weight.dim() == 3 else F.conv2d
    return conv(
        _to64(input),
        _to64(weight),
        _to64(bias),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


def reference(
    direction: str,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    grad_output: torch.Tensor | None = None,
    **conv_kwargs,
) -> tuple[torch.Tensor, ...]:
    """What ``direction`` must reproduce, in float64 on the CPU, in the order
    `convbench.measure.passes` returns it."""
    if direction == "forward":
        with torch.no_grad():
            return (reference_conv(input, weight, bias, **conv_kwargs),)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if grad_output is None:
        raise ValueError(f"grad_output: the {direction} reference needs the output gradient")
    x64, w64 = _to64(input, grad=True), _to64(weight, grad=True)
    b64 = _to64(bias, grad=True)
    conv = F.conv1d if weight.dim() == 3 else F.conv2d
    with torch.enable_grad():
        y64 = conv(x64, w64, b64, **conv_kwargs)
        leaves = (x64, w64) if b64 is None else (x64, w64, b64)
        grads = torch.autograd.grad(y64, leaves, _to64(grad_output))
    dx, dw, db = (*grads, None)[:3]
    by_direction = {
        "backward_data": (dx,),
        "backward_weight": (dw,) if db is None else (dw, db),
        "backward": (dx, dw) if db is None else (dx, dw, db),
        "train": (y64.detach(), dx, dw) if db is None else (y64.detach(), dx, dw, db),
    }
    return by_direction[direction]
