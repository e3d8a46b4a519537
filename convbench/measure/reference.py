"""The float64 reference every error column is measured against: PyTorch's own convolution
(`F.conv1d`/`F.conv2d`) in float64 on the CPU, from the same — possibly low-precision —
values the backend was given, so that rounding the inputs is not counted as the backend's
error.

``forward`` compares the output; ``backward`` the input and weight gradients for a given
output gradient (the worse of the two is reported).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    """What a backend's pass must reproduce, in float64 on the CPU: ``(output,)`` for
    ``forward``; ``(grad_input, grad_weight)`` for ``backward`` from ``grad_output``."""
    if direction == "forward":
        with torch.no_grad():
            return (reference_conv(input, weight, bias, **conv_kwargs),)
    if direction != "backward":
        raise ValueError(f"direction: expected 'forward' or 'backward', got {direction!r}")
    if grad_output is None:
        raise ValueError("grad_output: the backward reference needs the output gradient")
    x64, w64 = _to64(input, grad=True), _to64(weight, grad=True)
    conv = F.conv1d if weight.dim() == 3 else F.conv2d
    with torch.enable_grad():
        y64 = conv(x64, w64, _to64(bias), **conv_kwargs)
        return torch.autograd.grad(y64, (x64, w64), _to64(grad_output))
