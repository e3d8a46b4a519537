"""PyTorch's own convolution, as the vendor backends call it: which kernel family PyTorch
dispatches a call to, the library switches, and the call itself.

The vendor backends (`onednn`, `cudnn`) call `torch.nn.functional.conv1d/conv2d` with their
library switched on, after asking PyTorch which kernel family it would dispatch to
(``torch._C._select_conv_backend``, `selected_path`). If PyTorch would take another path for a
configuration, the backend refuses it with `Unsupported` saying so: a row labelled ``onednn``
always measured oneDNN.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

from convbench.backends.ops import crop_padding, pad_input
from convbench.backends.plan import Passes
from convbench.problem.spec import ConvArgs


def torch_conv(args: ConvArgs, x, weight, bias):
    """``F.conv1d``/``F.conv2d`` on a batched input; asymmetric padding ('same' with an even
    kernel extent) is applied explicitly first, as PyTorch itself does."""
    fn = F.conv1d if args.nd == 1 else F.conv2d
    sym = args.symmetric_padding
    if sym is not None:
        return fn(x, weight, bias, args.stride, sym, args.dilation, args.groups)
    return fn(pad_input(x, args), weight, bias, args.stride, 0, args.dilation, args.groups)


@functools.lru_cache(maxsize=1024)
def selected_path(args: ConvArgs, **switches) -> str:
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
    with flags(**switches):
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


def kernel_family(path: str, dtype: torch.dtype, *, tf32: bool, autotune: bool) -> str:
    """The kernel family a result records (its ``dispatch`` column): PyTorch's path
    (`selected_path`), qualified on cuDNN by what changes the kernel that runs. TF32 math
    for float32 selects tensor-core kernels with 10-bit mantissas instead of float32
    arithmetic, and the autotuner runs the algorithm it timed fastest instead of cuDNN's
    heuristic pick. So ``Cudnn``, ``Cudnn (TF32)``, ``Cudnn (autotuned)`` and
    ``Cudnn (TF32, autotuned)`` are different kernels. Two results of one family ran the
    same kernel (`convbench.analysis.winners.same_kernel`)."""
    if not path.startswith("Cudnn"):
        return path
    qualifiers = [
        name
        for name, on in (("TF32", tf32 and dtype == torch.float32), ("autotuned", autotune))
        if on
    ]
    return f"{path} ({', '.join(qualifiers)})" if qualifiers else path


def _probe_tensor(shape, args: ConvArgs) -> torch.Tensor:
    # Dispatch looks at shapes, dtype, device and memory format, not at data: an empty
    # tensor with contiguous strides answers without allocating the problem's memory.
    # Uninitialised, and cached per configuration by `selected_path`.
    return torch.empty(shape, dtype=args.dtype, device=args.device)


_UNCHANGED = contextlib.nullcontext()


def flags(
    mkldnn: bool | None = None,
    cudnn: bool | None = None,
    benchmark: bool = False,
    allow_tf32: bool = False,
):
    """Switch oneDNN and/or cuDNN (autotuner, TF32) for the duration, restoring them after.

    Where nothing is to change (no switch, or oneDNN asked for as it already is: PyTorch's
    default), the context is a shared no-op: the vendor backend and ``torch``, which run the
    same kernel there, then pay the same per-call cost, and a timing cannot tell them apart
    by their wrappers."""
    if cudnn is None and (mkldnn is None or torch._C._get_mkldnn_enabled() == mkldnn):
        return _UNCHANGED
    return _switched(mkldnn, cudnn, benchmark, allow_tf32)


@contextlib.contextmanager
def _switched(mkldnn: bool | None, cudnn: bool | None, benchmark: bool, allow_tf32: bool):
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


class TorchPasses(Passes):
    """PyTorch's own convolution with ``switches`` (`flags`) set: the forward is one
    differentiable call (so autograd, double backward included, is PyTorch's), and each
    gradient is timed alone through ``aten.convolution_backward`` with its output mask."""

    native_autograd = True
    backward_method = "aten.convolution_backward, one output mask per gradient"

    def __init__(self, args, weight, bias, switches: dict):
        super().__init__(args, weight, bias)
        self.switches = switches
        self._input = None  # the shape convolution_backward needs for the data gradient

    def autograd_forward(self, x, weight, bias):
        with flags(**self.switches):
            return torch_conv(self.args, x, weight, bias)

    def forward(self, x):
        return self.autograd_forward(x, self.weight, self.bias)

    def prepare_pass(self, direction):
        if direction == "backward_data" and self._input is None:
            # Read for its shape only (the data gradient does not depend on the input).
            shape = list(self.args.input_shape)
            if self.args.symmetric_padding is None:
                for i, (lo, hi) in enumerate(self.args.padding):
                    shape[2 + i] += lo + hi
            self._input = torch.empty(shape, dtype=self.args.dtype, device=self.args.device)

    def _backward(self, x, dy, mask):
        a = self.args
        sym = a.symmetric_padding
        padding = list(sym) if sym is not None else [0] * a.nd
        if x is None:
            x = self._input
        elif sym is None:
            x = pad_input(x, a)
        bias_sizes = [a.out_channels] if (self.bias is not None and mask[2]) else None
        with flags(**self.switches):
            dx, dw, db = torch.ops.aten.convolution_backward(
                dy,
                x,
                self.weight,
                bias_sizes,
                list(a.stride),
                padding,
                list(a.dilation),
                False,
                [0] * a.nd,
                a.groups,
                mask,
            )
        if dx is not None and sym is None:
            dx = crop_padding(dx, a).contiguous()
        return dx, dw, db

    def backward_data(self, dy):
        return self._backward(None, dy, [True, False, False])[0]

    def backward_weight(self, x, dy):
        _, dw, db = self._backward(x, dy, [False, True, self.bias is not None])
        return dw, db

    def backward(self, x, dy, saved=None, need_data=True, need_weight=True):
        mask = [need_data, need_weight, need_weight and self.bias is not None]
        return self._backward(x, dy, mask)
