"""onednn_packed: oneDNN as Inductor runs a frozen model's convolutions on the CPU.

With ``torch.compile(model, freezing=True)`` Inductor replaces each 2-D ``aten.convolution``
whose weight is a constant by a weight reorder, done once when the model is compiled, and one
oneDNN call per forward (``_register_weight_pack_pass`` in
``torch/_inductor/fx_passes/mkldnn_fusion.py``)::

    packed = mkldnn._reorder_convolution_weight(w, padding, stride, dilation, groups, input_size)
    y = mkldnn._convolution_pointwise(x, packed, b, padding, stride, dilation, groups,
                                      "none", [], "")

This backend does exactly that: the reorder into oneDNN's blocked weight format is the plan's
per-weight work (timed apart, as ``prepare_ms``), the pointwise call is what a forward times.
Given an input size, the reorder always packs for a channels-last source, and a convolution on
a packed weight always computes in channels-last: its output is NHWC, and a contiguous input is
converted inside the call (Inductor converts it just before; a copy either way). So one packing
serves both layouts.

It is the vendor at its best for inference, so it is the baseline the from-scratch backends
must beat there; where `onednn` and `torch` pay for PyTorch's plain-weight path on every call,
this does not. It refuses what Inductor would not pack (1-D convolutions; dtypes the CPU's
oneDNN has no kernels for). Like Inductor, it packs the small batch-1 layers eager PyTorch
sends to its own kernels too. Its weight is an inference format: the training passes are the
`onednn` rows.
"""

from __future__ import annotations

import math

import torch

from convbench.backends import Backend, register
from convbench.backends.ops import pad_input
from convbench.backends.plan import Passes
from convbench.errors import Unsupported
from convbench.problem.axes import dtype_name
from convbench.problem.spec import ConvArgs

TRAINING = (
    "onednn_packed: the packed weight is an inference format (Inductor packs only frozen "
    "weights); oneDNN's training passes are the `onednn` rows"
)


def _dtype_reason(dtype: torch.dtype) -> str | None:
    # As Inductor's `_is_packable_convolution`: bf16/fp16 only where the CPU has oneDNN kernels.
    if dtype == torch.float32:
        return None
    supported = {
        torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
        torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported,
    }
    if dtype not in supported:
        return (
            f"onednn_packed: dtype {dtype_name(dtype)} not supported "
            "(oneDNN convolves float32, bfloat16 and float16)"
        )
    if not supported[dtype]():
        return f"onednn_packed: this CPU has no oneDNN {dtype_name(dtype)} convolution kernels"
    return None


class PackedPasses(Passes):
    """The forward on a weight reordered once into oneDNN's blocked format."""

    backward_method = "none (inference only: training passes are refused)"

    def __init__(self, args: ConvArgs, weight, bias):
        super().__init__(args, weight, bias)
        sym = args.symmetric_padding
        # Asymmetric padding ('same', even kernel) is applied to the input first, as aten does.
        self.pad_first = sym is None
        self.params = (list(sym or (0,) * args.nd), list(args.stride), list(args.dilation))
        shape = list(args.input_shape)
        if self.pad_first:
            for i, (lo, hi) in enumerate(args.padding):
                shape[2 + i] += lo + hi
        self.input_size = shape  # what the conv sees: Inductor passes its input's size
        self.packed: torch.Tensor | None = None
        self.prepared = {"dispatch": "Mkldnn", "packed": True}

    def prepare_pass(self, direction: str) -> None:
        if direction != "forward":  # reached through `Plan.backward*` on a forward plan
            raise Unsupported(TRAINING)
        padding, stride, dilation = self.params
        self.packed = torch.ops.mkldnn._reorder_convolution_weight(
            self.weight, padding, stride, dilation, self.args.groups, self.input_size
        )
        self.prepared["weight"] = self.packed  # an opaque oneDNN tensor (layout torch._mkldnn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_first:
            x = pad_input(x, self.args)
        padding, stride, dilation = self.params
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.packed, self.bias, padding, stride, dilation, self.args.groups, "none", [], ""
        )


@register
class OneDNNPackedBackend(Backend):
    name = "onednn_packed"
    description = "oneDNN on a weight prepacked once, as Inductor's freezing runs it (inference)"
    backward_method = PackedPasses.backward_method

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type != "cpu":
            return f"onednn_packed: CPU only, got device {args.device}"
        if not torch.backends.mkldnn.is_available():
            return "onednn_packed: this PyTorch build has no oneDNN (torch.backends.mkldnn)"
        if args.nd != 2:
            return "onednn_packed: 2-D only (Inductor packs 4-D conv weights; conv1d is not packed)"
        return _dtype_reason(args.dtype)

    def check_pass(self, args: ConvArgs, direction: str) -> str | None:
        return TRAINING if direction in ("backward_data", "backward_weight") else None

    def workspace_bytes(self, args: ConvArgs) -> int:
        # The packed weight, plus the channels-last copy oneDNN makes of a contiguous input.
        elements = math.prod(args.weight_shape)
        if getattr(args, "layout", "contiguous") != "channels_last":
            elements += math.prod(args.input_shape)
        return elements * args.dtype.itemsize

    def plan(self, args, weight, bias):
        return PackedPasses(args, weight, bias)
