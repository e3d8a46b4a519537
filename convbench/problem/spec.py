"""What a convolution problem is: shapes and parameters, validated and normalised.

Two views of one thing:

* `ConvProblem` is the user-facing description (a suite entry): batch, channels, spatial size,
  kernel, stride, padding in any form `torch.nn.functional.conv1d/conv2d` accept, dilation,
  groups, bias. It derives the output shape and the direct-convolution FLOP count, and refuses
  impossible problems with a message naming the field.
* `ConvArgs` is the normalised call a backend sees: every parameter expanded to a per-dimension
  tuple, padding resolved to explicit ``(before, after)`` pairs (``'same'`` may be asymmetric,
  exactly as PyTorch pads it), the input's batched shape, dtype and device.

Both are pure values: no tensors are created here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import torch

from convbench.problem.layout import STRIDED, layout_of
from convbench.problem.shapes import (
    IntOrTuple,
    Padding,
    ProblemError,
    as_tuple,
    direct_macs,
    expand,
    output_size,
    resolve_padding,
)


@dataclass(frozen=True)
class ConvArgs:
    """A normalised convolution call: what every backend receives.

    ``input_shape`` is always batched ``(N, C, *spatial)``; ``unbatched`` records whether the
    caller passed ``(C, *spatial)``. ``padding`` holds explicit ``(before, after)`` pairs.
    """

    nd: int
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    has_bias: bool
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    dtype: torch.dtype
    device: torch.device
    unbatched: bool = False
    #: The input's layout (`convbench.problem.layout`): a backend may compute in it, or
    #: refuse it with a reason.
    layout: str = "contiguous"

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def in_channels(self) -> int:
        return self.input_shape[1]

    @property
    def out_channels(self) -> int:
        return self.weight_shape[0]

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.input_shape[2:]

    @property
    def kernel(self) -> tuple[int, ...]:
        return self.weight_shape[2:]

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return output_size(self.spatial, self.kernel, self.stride, self.padding, self.dilation)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Batched output shape ``(N, K, *out_spatial)``."""
        return (self.batch, self.out_channels, *self.out_spatial)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of direct convolution (`direct_macs`; bias excluded)."""
        return direct_macs(
            self.batch,
            self.in_channels,
            self.out_channels,
            self.out_spatial,
            self.kernel,
            self.groups,
        )

    @property
    def flops(self) -> int:
        """Direct-convolution FLOPs of the forward pass: 2 per multiply-accumulate."""
        return 2 * self.macs

    @property
    def symmetric_padding(self) -> tuple[int, ...] | None:
        """Per-dim padding if every dim pads equally on both sides, else None."""
        if all(lo == hi for lo, hi in self.padding):
            return tuple(lo for lo, _ in self.padding)
        return None

    @classmethod
    def from_call(
        cls,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
    ) -> ConvArgs:
        """Validate a `F.conv1d/conv2d`-style call and normalise it.

        Raises `ProblemError` (a ValueError) for anything `torch.nn.functional` would refuse.
        Works on meta tensors, so it costs nothing.
        """
        if weight.dim() not in (3, 4):
            raise ProblemError(
                "weight", f"expected a 3-D (conv1d) or 4-D (conv2d) weight, got {weight.dim()}-D"
            )
        nd = weight.dim() - 2
        if input.dim() == nd + 1:
            unbatched, input_shape = True, (1, *input.shape)
        elif input.dim() == nd + 2:
            unbatched, input_shape = False, tuple(input.shape)
        else:
            raise ProblemError(
                "input",
                f"expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input for a "
                f"{nd}-D convolution, got {input.dim()}-D",
            )
        if input.dtype != weight.dtype:
            raise ProblemError(
                "weight", f"dtype {weight.dtype} does not match input dtype {input.dtype}"
            )
        if input.device != weight.device:
            raise ProblemError(
                "weight", f"device {weight.device} does not match input device {input.device}"
            )
        if bias is not None:
            if tuple(bias.shape) != (weight.shape[0],):
                raise ProblemError(
                    "bias", f"expected shape ({weight.shape[0]},), got {tuple(bias.shape)}"
                )
            if bias.dtype != input.dtype or bias.device != input.device:
                raise ProblemError("bias", "dtype/device must match the input")
        problem = ConvProblem(
            batch=input_shape[0],
            in_channels=input_shape[1],
            out_channels=weight.shape[0],
            spatial=tuple(input_shape[2:]),
            kernel=tuple(weight.shape[2:]),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias is not None,
        )
        if weight.shape[1] * problem.groups != problem.in_channels:
            raise ProblemError(
                "weight",
                f"weight has {weight.shape[1]} input channels per group × {problem.groups} "
                f"groups, but the input has {problem.in_channels} channels",
            )
        layout = layout_of(input.unsqueeze(0) if unbatched else input)
        layout = "contiguous" if layout == STRIDED else layout
        return problem.args(input.dtype, input.device, unbatched=unbatched, layout=layout)


@dataclass(frozen=True)
class ConvProblem:
    """One convolution problem, 1D or 2D, as a suite describes it.

    ``spatial`` and ``kernel`` have one entry per spatial dim (1 for conv1d, 2 for conv2d).
    ``stride``/``dilation`` accept an int or a tuple; ``padding`` an int, a tuple, ``'same'``
    or ``'valid'``. Construction validates; the fields are stored normalised to tuples so
    that equal problems compare and hash equal.
    """

    batch: int
    in_channels: int
    out_channels: int
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: IntOrTuple = 1
    padding: Padding = 0
    dilation: IntOrTuple = 1
    groups: int = 1
    bias: bool = True
    _pads: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spatial = as_tuple("spatial", self.spatial)
        nd = len(spatial)
        if nd not in (1, 2):
            raise ProblemError("spatial", f"expected 1 (conv1d) or 2 (conv2d) dims, got {nd}")
        if any(s < 1 for s in spatial):
            raise ProblemError("spatial", f"every size must be >= 1, got {spatial}")
        kernel = as_tuple("kernel", self.kernel, nd)
        if any(k < 1 for k in kernel):
            raise ProblemError("kernel", f"every size must be >= 1, got {kernel}")
        for name in ("batch", "in_channels", "out_channels", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ProblemError(name, f"must be a positive int, got {value!r}")
        if not isinstance(self.bias, bool):
            raise ProblemError("bias", f"must be true or false, got {self.bias!r}")
        stride = expand("stride", self.stride, nd, 1)
        dilation = expand("dilation", self.dilation, nd, 1)
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ProblemError(
                    name,
                    f"{getattr(self, name)} is not divisible by groups={self.groups}",
                )
        pads = resolve_padding(self.padding, nd, kernel, stride, dilation)
        output_size(spatial, kernel, stride, pads, dilation)  # raises if the kernel cannot fit
        padding = (
            self.padding
            if isinstance(self.padding, str)
            else expand("padding", self.padding, nd, 0)
        )
        for name, value in (
            ("spatial", spatial),
            ("kernel", kernel),
            ("stride", stride),
            ("dilation", dilation),
            ("padding", padding),
            ("_pads", pads),
        ):
            object.__setattr__(self, name, value)

    @property
    def nd(self) -> int:
        return len(self.spatial)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.spatial)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return output_size(self.spatial, self.kernel, self.stride, self._pads, self.dilation)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.out_spatial)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of direct convolution (bias excluded), as `ConvArgs.macs`."""
        return self.args().macs

    @property
    def flops(self) -> int:
        """Direct-convolution FLOPs: 2 per multiply-accumulate (bias adds not counted)."""
        return 2 * self.macs

    def args(
        self,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        unbatched: bool = False,
        layout: str = "contiguous",
    ) -> ConvArgs:
        return ConvArgs(
            nd=self.nd,
            input_shape=self.input_shape,
            weight_shape=self.weight_shape,
            has_bias=self.bias,
            stride=self.stride,
            padding=self._pads,
            dilation=self.dilation,
            groups=self.groups,
            dtype=dtype,
            device=torch.device(device),
            unbatched=unbatched,
            layout=layout,
        )

    def conv_kwargs(self) -> dict:
        """Keyword arguments for `F.conv1d/conv2d` and `Backend.conv` (bias excluded)."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_pads")
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @property
    def key(self) -> str:
        """Stable 12-hex-digit id of the problem's fields (same fields, same id, any machine)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def make_tensors(
        self,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Seeded N(0,1) input, weight and (if any) bias, generated on the CPU in float64
        so that every device and dtype sees the same values, then cast and moved."""
        gen = torch.Generator().manual_seed(seed)

        def draw(shape):
            return torch.randn(shape, generator=gen, dtype=torch.float64).to(
                device=device, dtype=dtype
            )

        x = draw(self.input_shape)
        w = draw(self.weight_shape)
        b = draw((self.out_channels,)) if self.bias else None
        return x, w, b
