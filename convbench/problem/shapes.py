"""Shape arithmetic of a convolution: parameter forms, padding, output size, FLOPs.

Pure functions on ints and tuples, shared by `ConvProblem` (a suite entry), `ConvArgs` (a
backend's call) and the model tracer; no tensors are created here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

IntOrTuple = int | Sequence[int]
Padding = int | Sequence[int] | str


class ProblemError(ValueError):
    """An impossible convolution problem; ``field`` names the offending parameter."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def expand(name: str, value: IntOrTuple, nd: int, minimum: int) -> tuple[int, ...]:
    """Expand an int or a 1-/nd-tuple to an nd-tuple of ints >= minimum, as torch does."""
    if isinstance(value, bool):
        raise ProblemError(name, f"expected an int or a tuple of {nd} ints, got {value!r}")
    if isinstance(value, int):
        values = (value,) * nd
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ProblemError(
                name, f"expected an int or a tuple of {nd} ints, got {value!r}"
            ) from None
        if len(values) == 1:
            values = values * nd
        if len(values) != nd or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise ProblemError(name, f"expected an int or a tuple of {nd} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ProblemError(name, f"every entry must be >= {minimum}, got {value!r}")
    return values


def resolve_padding(
    padding: Padding,
    nd: int,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """Explicit ``(before, after)`` zero padding per spatial dim, matching PyTorch.

    ``'same'`` pads ``dilation*(kernel-1)`` in total, the smaller half before (PyTorch's
    choice when the total is odd); it is only defined for stride 1.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ProblemError(
                    "padding", "'same' is not supported for strided convolutions (stride > 1)"
                )
            pairs = []
            for k, d in zip(kernel, dilation, strict=True):
                total = d * (k - 1)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        raise ProblemError(
            "padding", f"expected an int, a tuple, 'same' or 'valid', got {padding!r}"
        )
    pads = expand("padding", padding, nd, 0)
    return tuple((p, p) for p in pads)


def output_size(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """Output spatial size; raises ProblemError if the kernel does not fit the padded input."""
    out = []
    for i, (size, k, s, (lo, hi), d) in enumerate(
        zip(spatial, kernel, stride, pads, dilation, strict=True)
    ):
        span = d * (k - 1) + 1
        padded = size + lo + hi
        if span > padded:
            raise ProblemError(
                "kernel",
                f"dilated kernel extent {span} is larger than the padded input {padded} "
                f"in spatial dim {i}",
            )
        out.append((padded - span) // s + 1)
    return tuple(out)


def direct_macs(
    batch: int,
    in_channels: int,
    out_channels: int,
    out_spatial: Sequence[int],
    kernel: Sequence[int],
    groups: int,
) -> int:
    """Multiply-accumulates of direct convolution, ``N·K·∏out·C/g·∏kernel`` (bias excluded):
    the one FLOP count (2 per MAC) every figure of convbench is based on."""
    return (
        batch * out_channels * math.prod(out_spatial) * (in_channels // groups) * math.prod(kernel)
    )


def as_tuple(name: str, value, nd: int | None = None) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * (nd or 1)
    try:
        values = tuple(value)
    except TypeError:
        raise ProblemError(name, f"expected an int or a list of ints, got {value!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ProblemError(name, f"expected ints, got {value!r}")
    if nd is not None and len(values) == 1:
        values = values * nd
    if nd is not None and len(values) != nd:
        raise ProblemError(name, f"expected {nd} entries (one per spatial dim), got {value!r}")
    return values
