"""torch: exactly `F.conv1d`/`F.conv2d` as PyTorch dispatches them — any dtype, any
configuration PyTorch accepts, no library switched on or off — recording which kernel family
PyTorch chose (``prepared["dispatch"]``: ``Mkldnn``, ``Slow2d``, ``Cudnn (TF32)`` …, stored in
each result row's ``dispatch`` column).

It is what a model runs today, so it is the baseline wherever the vendor backend refuses a
configuration (float64 or batch-1 depthwise layers that PyTorch sends to its own kernels),
and the reference point of `convbench tune`. Its gradients are `aten.convolution_backward`
with one output mask per gradient, as the vendor backends time them.
"""

from __future__ import annotations

import torch

from convbench.backends import Backend, register
from convbench.backends.dispatch import TorchPasses, kernel_family, selected_path
from convbench.problem.spec import ConvArgs

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def dispatch_of(args: ConvArgs) -> str | None:
    """The kernel family PyTorch picks for this call with today's settings (None if it would
    not say): on cuDNN, with the TF32 and autotuner settings it runs with
    (`kernel_family`; PyTorch's default lets cuDNN use TF32 for float32)."""
    if args.device.type == "meta":
        return None
    try:
        path = selected_path(args)
    except RuntimeError:
        return None
    cudnn = torch.backends.cudnn
    return kernel_family(path, args.dtype, tf32=cudnn.allow_tf32, autotune=cudnn.benchmark)


@register
class TorchBackend(Backend):
    name = "torch"
    description = "PyTorch's own dispatch (F.conv1d/conv2d as a model runs it), kernel recorded"
    backward_method = TorchPasses.backward_method

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type not in ("cpu", "cuda", "meta"):
            return f"torch: device {args.device.type} not supported"
        if args.device.type == "cuda" and not torch.cuda.is_available():
            return "no CUDA device"
        if args.dtype not in FLOAT_DTYPES:
            return f"torch: dtype {args.dtype} not supported (floating point only)"
        return None

    def plan(self, args, weight, bias):
        passes = TorchPasses(args, weight, bias, {})
        passes.prepared = {"dispatch": dispatch_of(args)}
        return passes
