"""The vendor paths: PyTorch's own convolution through cuDNN (CUDA) and oneDNN (CPU).

Both call `torch.nn.functional.conv1d/conv2d` with the library switched on, after asking
PyTorch which kernel family it would dispatch to (``torch._C._select_conv_backend``). If PyTorch
would take another path for this configuration (e.g. its "slow" reference kernels for float64
on the CPU, where oneDNN has no double kernels), the backend raises `Unsupported` saying so:
a row labelled ``onednn`` always measured oneDNN.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

from convbench.backends import Backend, register
from convbench.spec import ConvArgs


def _torch_conv(args: ConvArgs, x, weight, bias):
    fn = F.conv1d if args.nd == 1 else F.conv2d
    sym = args.symmetric_padding
    if sym is not None:
        return fn(x, weight, bias, args.stride, sym, args.dilation, args.groups)
    # Asymmetric padding ('same' with an even kernel extent): pad explicitly, as torch does.
    pads: list[int] = []
    for lo, hi in reversed(args.padding):
        pads += [lo, hi]
    return fn(F.pad(x, pads), weight, bias, args.stride, 0, args.dilation, args.groups)


@functools.lru_cache(maxsize=1024)
def selected_path(args: ConvArgs, **flags) -> str:
    """Name of the kernel family PyTorch dispatches this call to (e.g. 'Mkldnn', 'Cudnn')."""
    sym = args.symmetric_padding
    padding = list(sym) if sym is not None else [0] * args.nd
    shape = list(args.input_shape)
    if sym is None:
        for i, (lo, hi) in enumerate(args.padding):
            shape[2 + i] += lo + hi
    x = _probe_tensor(shape, args)
    w = _probe_tensor(args.weight_shape, args)
    b = _probe_tensor((args.out_channels,), args) if args.has_bias else None
    with _flags(**flags):
        backend = torch._C._select_conv_backend(
            x,
            w,
            b,
            list(args.stride),
            padding,
            list(args.dilation),
            False,
            [0] * args.nd,
            args.groups,
            None,
        )
    return str(backend).rsplit(".", 1)[-1]


def _probe_tensor(shape, args: ConvArgs) -> torch.Tensor:
    # Dispatch looks at shapes, dtype, device and memory format, not at data: an empty
    # tensor with contiguous strides answers without allocating the problem's memory.
    # Uninitialised, and cached per configuration by `selected_path`.
    return torch.empty(shape, dtype=args.dtype, device=args.device)


@contextlib.contextmanager
def _flags(
    mkldnn: bool | None = None,
    cudnn: bool | None = None,
    benchmark: bool = False,
    allow_tf32: bool = False,
):
    with contextlib.ExitStack() as stack:
        if mkldnn is not None:
            # Only the on/off switch: mkldnn.flags() would also reset TF32/determinism.
            previous = torch._C._get_mkldnn_enabled()
            torch._C._set_mkldnn_enabled(mkldnn)
            stack.callback(torch._C._set_mkldnn_enabled, previous)
        if cudnn is not None:
            stack.enter_context(
                torch.backends.cudnn.flags(
                    enabled=cudnn, benchmark=benchmark, allow_tf32=allow_tf32
                )
            )
        yield


@register
class OneDNNBackend(Backend):
    name = "onednn"
    description = "PyTorch CPU convolution through oneDNN (torch.backends.mkldnn)"

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type != "cpu":
            return f"onednn: CPU only, got device {args.device}"
        if not torch.backends.mkldnn.is_available():
            return "onednn: this PyTorch build has no oneDNN (torch.backends.mkldnn)"
        path = selected_path(args, mkldnn=True)
        if path not in ("Mkldnn", "MkldnnEmpty"):
            return (
                f"onednn: PyTorch would not use oneDNN for this configuration "
                f"(dtype {str(args.dtype).removeprefix('torch.')}); it dispatches to {path}"
            )
        return None

    def plan(self, args, weight, bias):
        def run(x):
            with _flags(mkldnn=True):
                return _torch_conv(args, x, weight, bias)

        return run, {}


@register
class CudnnBackend(Backend):
    """cuDNN through PyTorch. ``benchmark=True`` turns on cuDNN's autotuner
    (`torch.backends.cudnn.benchmark`): the first call for a shape tries the algorithms and
    caches the fastest, so warm-up absorbs the search."""

    name = "cudnn"
    description = "PyTorch CUDA convolution through cuDNN"

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
                f"(dtype {str(args.dtype).removeprefix('torch.')}); it dispatches to {path}"
            )
        return None

    def plan(self, args, weight, bias):
        def run(x):
            with _flags(cudnn=True, benchmark=self.benchmark, allow_tf32=self.tf32):
                return _torch_conv(args, x, weight, bias)

        return run, {"autotune": self.benchmark, "tf32": self.tf32}
