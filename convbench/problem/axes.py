"""The axes a problem is measured along, and what each value means.

* **dtypes** — the floating-point types convbench measures, each with its accuracy tolerance
  (`TOLERANCE`): the largest ``rel_err = max|out - ref| / max|ref|`` against a float64
  reference that still counts as a right answer. The runner, the analysis, the report and the
  backend tests all use this one table.
* **directions** — what of a convolution is timed, each with the multiple of the forward's
  direct-convolution FLOPs it counts (`FLOP_FACTOR`): ``forward`` (inference, the weight
  prepared once); ``backward_data`` (dL/dx from a fixed upstream gradient) and
  ``backward_weight`` (dL/dw and dL/db), each alone, from the input and the upstream gradient;
  ``backward`` (both gradients after a forward pass, reusing what it kept); ``train`` (one
  training step's convolution work with a weight changed since the last step: prepare,
  forward, both gradients).
* **devices** — ``cpu``, ``cuda`` or ``cuda:N``.
* **layouts** — the memory format of the input, the weight and the upstream gradient:
  ``contiguous`` (PyTorch's default: NCHW, NCL) or ``channels_last`` (NHWC; for a 1-D
  convolution the NLC strides an NLP model hands ``conv1d`` after ``x.transpose(1, 2)``).
  `convbench.problem.layout` converts tensors and names a tensor's layout.

`Axes` is what a suite sweeps; `axis_values` validates one axis (a suite's ``[axes]`` entry or
a CLI override) and raises `FieldError` naming what is wrong. Pure: no torch import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

DTYPES = ("float32", "float16", "bfloat16", "float64")

#: Limit on ``rel_err`` per dtype (read-only). float64 and float32 are a few hundred ulps of
#: the output's scale; float16 and bfloat16 allow for inputs already rounded to 11 and 8
#: significant bits and a sum of many products.
TOLERANCE: Mapping[str, float] = MappingProxyType(
    {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
)

DIRECTIONS = ("forward", "backward_data", "backward_weight", "backward", "train")
#: Multiples of the forward's direct-convolution FLOPs that each direction counts: each
#: gradient costs what the forward does.
FLOP_FACTOR: Mapping[str, int] = MappingProxyType(
    {"forward": 1, "backward_data": 1, "backward_weight": 1, "backward": 2, "train": 3}
)
#: The three passes of a convolution, in the order a training step runs them: the one
#: definition (backends' plans, decisions, tuned layers).
PASS_NAMES = ("forward", "backward_data", "backward_weight")
#: The passes each direction runs.
PASSES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "forward": ("forward",),
        "backward_data": ("backward_data",),
        "backward_weight": ("backward_weight",),
        "backward": PASS_NAMES,
        "train": PASS_NAMES,
    }
)

DEVICE_PATTERN = re.compile(r"cpu|cuda(:[0-9]+)?")
LAYOUTS = ("contiguous", "channels_last")
AXES_KEYS = ("dtypes", "devices", "directions", "batch_sizes", "backends", "layouts")


def dtype_name(dtype: object) -> str:
    """``torch.float32`` or ``'float32'`` -> ``'float32'``."""
    return str(dtype).removeprefix("torch.")


def tolerance(dtype: object, table: Mapping[str, float] = TOLERANCE) -> float:
    """The limit on ``rel_err`` for ``dtype`` (a name or a torch dtype); ValueError naming the
    dtype if there is none."""
    try:
        return table[dtype_name(dtype)]
    except KeyError:
        raise ValueError(
            f"no accuracy tolerance for dtype {dtype_name(dtype)}; known: {', '.join(table)}"
        ) from None


def within_tolerance(rel_err: float | None, dtype: object) -> bool:
    """Whether ``rel_err`` is a right answer for ``dtype`` (NaN and None are not)."""
    return rel_err is not None and rel_err <= tolerance(dtype)


def flop_factor(direction: str) -> int:
    """How many forward passes' worth of direct-convolution FLOPs ``direction`` counts."""
    try:
        return FLOP_FACTOR[direction]
    except KeyError:
        raise ValueError(
            f"unknown direction {direction!r} (expected one of {', '.join(DIRECTIONS)})"
        ) from None


def passes_of(direction: str) -> tuple[str, ...]:
    """The passes ``direction`` runs (``backward`` and ``train`` need the forward's kept
    tensors, so they include it)."""
    flop_factor(direction)  # a clear error for an unknown direction
    return PASSES[direction]


class FieldError(Exception):
    """A bad value in one named field; the caller adds where it was (file, case, flag)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


_KINDS = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)


def kind(value: object) -> str:
    """What a TOML value is, in words (``'an integer'``)."""
    return next((word for t, word in _KINDS if isinstance(value, t)), "a date/time")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def axis_values(name: str, value: object) -> tuple:
    """Validate one axis (``dtypes``, ``devices``, ``directions``, ``batch_sizes``,
    ``backends``, ``layouts``): a non-empty array of known, distinct values."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise FieldError(name, f"expected an array, got {kind(value)} ({value!r})")
    values = tuple(value)
    if not values:
        raise FieldError(name, "must not be empty")
    for v in values:
        if name == "batch_sizes":
            if not is_int(v) or v < 1:
                raise FieldError(name, f"expected positive integers, got {v!r}")
        elif not isinstance(v, str) or not v:
            raise FieldError(name, f"expected non-empty strings, got {v!r}")
        elif name == "dtypes" and v not in DTYPES:
            raise FieldError(name, f"unknown dtype {v!r} (expected one of {', '.join(DTYPES)})")
        elif name == "directions" and v not in DIRECTIONS:
            raise FieldError(
                name, f"unknown direction {v!r} (expected one of {', '.join(DIRECTIONS)})"
            )
        elif name == "layouts" and v not in LAYOUTS:
            raise FieldError(name, f"unknown layout {v!r} (expected one of {', '.join(LAYOUTS)})")
        elif name == "devices" and not DEVICE_PATTERN.fullmatch(v):
            raise FieldError(name, f"unknown device {v!r} (expected cpu, cuda or cuda:N)")
    dups = sorted({v for v in values if values.count(v) > 1}, key=values.index)
    if dups:
        raise FieldError(name, f"{dups[0]!r} is listed twice")
    return values


@dataclass(frozen=True)
class Axes:
    """What a suite sweeps. ``None`` means: each case's own batch / every registered backend."""

    dtypes: tuple[str, ...] = ("float32",)
    devices: tuple[str, ...] = ("cpu",)
    directions: tuple[str, ...] = ("forward",)
    batch_sizes: tuple[int, ...] | None = None
    backends: tuple[str, ...] | None = None
    layouts: tuple[str, ...] = ("contiguous",)

    def __post_init__(self) -> None:
        for name in AXES_KEYS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
