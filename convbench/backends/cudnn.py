"""cuDNN: PyTorch's CUDA convolution through cuDNN (``torch.backends.cudnn``).

float32 runs with TF32 off by default, so a float32 row measured float32 arithmetic and meets
the float32 tolerance. Refuses, with PyTorch's own reason, every configuration PyTorch would
send elsewhere.
"""

from __future__ import annotations

import torch

from convbench.backends import Backend, register
from convbench.backends.dispatch import TorchPasses, kernel_family, selected_path
from convbench.problem.axes import dtype_name
from convbench.problem.spec import ConvArgs


@register
class CudnnBackend(Backend):
    """cuDNN through PyTorch. ``benchmark=True`` turns on cuDNN's autotuner
    (`torch.backends.cudnn.benchmark`): the first call for a shape tries the algorithms and
    caches the fastest, so warm-up absorbs the search."""

    name = "cudnn"
    description = "PyTorch CUDA convolution through cuDNN"
    backward_method = TorchPasses.backward_method

    def __init__(self, benchmark: bool = False, tf32: bool = False):
        # TF32 is off by default: float32 results then meet the float32 tolerance, and a
        # row labelled float32 measured float32 arithmetic. `tf32=True` measures TF32.
        self.benchmark = benchmark
        self.tf32 = tf32

    def check(self, args: ConvArgs) -> str | None:
        if not torch.cuda.is_available():
            return "no CUDA device"
        if args.device.type != "cuda":
            return f"cudnn: CUDA only, got device {args.device}"
        if not torch.backends.cudnn.is_available():
            return "cudnn: this PyTorch build has no cuDNN"
        path = selected_path(args, cudnn=True, benchmark=self.benchmark)
        if not path.startswith("Cudnn"):
            return (
                f"cudnn: PyTorch would not use cuDNN for this configuration "
                f"(dtype {dtype_name(args.dtype)}); it dispatches to {path}"
            )
        return None

    def plan(self, args, weight, bias):
        passes = TorchPasses(
            args,
            weight,
            bias,
            {"cudnn": True, "benchmark": self.benchmark, "allow_tf32": self.tf32},
        )
        path = selected_path(args, cudnn=True, benchmark=self.benchmark)
        family = kernel_family(path, args.dtype, tf32=self.tf32, autotune=self.benchmark)
        passes.prepared = {"autotune": self.benchmark, "tf32": self.tf32, "dispatch": family}
        return passes


@register
class CudnnTf32Backend(CudnnBackend):
    """cuDNN with TF32 on (`torch.backends.cudnn.allow_tf32`): float32 convolutions on the
    tensor cores with 10-bit mantissas. Its float32 rows are judged by the float32 tolerance
    like every other, so where TF32's error exceeds it they show as out of tolerance — what
    TF32 buys in speed, and what it costs in accuracy, side by side with `cudnn`."""

    name = "cudnn_tf32"
    description = "cuDNN with TF32 tensor-core math for float32"

    def __init__(self):
        super().__init__(tf32=True)


@register
class CudnnBenchmarkBackend(CudnnBackend):
    """cuDNN with its autotuner on (`torch.backends.cudnn.benchmark`): the first call for a
    shape times cuDNN's algorithms and keeps the fastest (in warm-up, not in the samples);
    TF32 stays off."""

    name = "cudnn_benchmark"
    description = "cuDNN with the autotuner choosing the algorithm per shape"

    def __init__(self):
        super().__init__(benchmark=True)
