"""The tuned convolution layers `convbench.optimize` makes: `TunedConv1d`, `TunedConv2d`.

A tuned layer's forward is written for the compiler. Where the per-layer plan of
`convbench tune` computes it in a layout of its own (``Tuning.layout``), it first converts
its input to that layout (a no-op where the input arrives in it). Then it does three things,
each of which `torch.compile(..., fullgraph=True)` traces without a break or a guard that
changes:

1. **route** the call (`route`): the backends decided for the problem this input makes
   (problem key, dtype, device, pass), found once per input shape and kept. Under Dynamo the
   answer is a constant of the graph (`torch._dynamo.assume_constant_result`), so the lookup
   itself is never traced;
2. where every pass stays on ``torch``, call PyTorch's own convolution, which the compiler
   optimises as its own (prepacked weights, folded BatchNorm, fused pointwise ops);
3. otherwise call the ``convbench::conv`` operator (`convbench.backends.library`), one node
   for the compiler, whose autograd runs the decided backward passes. The plans live behind
   the operator, keyed by the layer. In eager inference (a plain tensor, autograd off, no
   compiler) the layer calls the operator's body (`library.forward`) without its dispatch.

With a BatchNorm folded into the layer (`convbench.nn.fold`), in eval mode and with autograd
off, the layer returns ``batch_norm(conv(x))`` by itself — its plan prepared from the folded
weight and bias — and the BatchNorm passes its input through.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convbench.backends import library
from convbench.problem.axes import PASS_NAMES as PASSES
from convbench.problem.axes import dtype_name
from convbench.problem.layout import to_layout
from convbench.problem.shapes import resolve_padding
from convbench.problem.trace import describe_call

TORCH_ONLY = ("torch",) * 3


class Tuning:
    """What a tuned layer keeps: its name (as `convbench tune` names it), the decisions, its
    routes (one per input shape), the BatchNorm folded into it (or None), the warnings it has
    given, and the plans behind the operator (`library.LayerPlans`, found by ``key``)."""

    def __init__(
        self, name: str, decisions: dict, bn: nn.Module | None = None, layout: str | None = None
    ):
        self.name = name
        self.decisions = decisions
        self.bn = bn
        #: The layout the per-layer plan computes this layer in (its input is converted to
        #: it where it arrives in another), or None: as it arrives.
        self.layout = layout
        self.layer: Callable[[], nn.Module | None] = lambda: None  # set by `tune_layer`
        self.routes: dict = {}
        self.warned: set[str] = set()
        self.pads: list[int] = []  # explicit (before, after) padding pairs, set by `_bind`
        #: The layer's stride, pads, dilation and groups as `library.forward` takes them.
        self.conv: library.Conv = ((), (), (), 1)
        self.plans = library.LayerPlans()
        self.key = self.plans.key
        _TUNINGS[self.key] = self

    def __reduce__(self):  # a copy, or an unpickled layer, prepares its own plans
        return Tuning, (self.name, self.decisions, self.bn, self.layout)


_TUNINGS: weakref.WeakValueDictionary[int, Tuning] = weakref.WeakValueDictionary()


@torch._dynamo.assume_constant_result
def route(key: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> tuple:
    """The backends of a tuned layer's three passes for a call (the forward's where the
    decisions hold no backward pass; ``torch`` throughout, with one warning per layer, where
    they hold nothing for this input shape). Worked out once per input shape; a constant of
    the traced graph."""
    tuning = _TUNINGS[key]
    found = tuning.routes.get((shape, dtype, device))
    if found is None:
        found = tuning.routes[(shape, dtype, device)] = _new_route(tuning, shape, dtype, device)
    return found


def _new_route(tuning: Tuning, shape, dtype, device) -> tuple:
    module = tuning.layer()
    call = describe_call(tuning.name, module, shape)
    key = (
        call.problem.key if call.problem else "",
        dtype_name(dtype),
        device_name(device),
    )
    chosen = [tuning.decisions.get((*key, p)) for p in PASSES]
    if chosen[0] is None:
        if "shape" not in tuning.warned:
            tuning.warned.add("shape")
            warnings.warn(
                f"convbench: layer {tuning.name!r}: no decision for input shape "
                f"{list(shape)} ({key[1]}, {key[2]}): it runs torch",
                stacklevel=_user_stacklevel(),
            )
        chosen = list(TORCH_ONLY)
    return (chosen[0], chosen[1] or chosen[0], chosen[2] or chosen[0])


def _pads(module: nn.Module) -> list[int]:
    """The module's padding as explicit (before, after) pairs, flattened (none where it pads
    by itself: a ``padding_mode`` other than zeros)."""
    nd = module.weight.dim() - 2
    padding = 0 if module.padding_mode != "zeros" else module.padding
    pairs = resolve_padding(padding, nd, module.kernel_size, module.stride, module.dilation)
    return [v for pair in pairs for v in pair]


class _TunedConv:
    """The `_conv_forward` every tuned layer runs (mixed into the two classes below)."""

    _convbench: Tuning

    def _conv_forward(self, input, weight, bias):
        tuning = self._convbench
        if tuning.layout is not None:  # the plan's conversion: a no-op where it arrives so
            input = to_layout(input, tuning.layout)
        backends = route(tuning.key, tuple(input.shape), input.dtype, input.device)
        if self.padding_mode != "zeros":  # as nn.Conv does: pad first, then convolve
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        bn = tuning.bn
        if bn is not None and (bn.training or torch.is_grad_enabled()):
            bn = None  # folded only for inference; the BatchNorm runs itself
        if backends == TORCH_ONLY:
            conv = F.conv1d if weight.dim() == 3 else F.conv2d
            padding = 0 if self.padding_mode != "zeros" else self.padding
            y = conv(input, weight, bias, self.stride, padding, self.dilation, self.groups)
            if bn is None:
                return y
            return F.batch_norm(
                y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
            )
        folded = () if bn is None else (bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
        if _eager_inference(input):  # the operator's body, without its dispatch
            return library.forward(
                input, weight, bias, tuning.conv, backends[0], tuning.key, folded or None
            )
        keep = backends[0] == backends[2] and torch.is_grad_enabled() and weight.requires_grad
        return torch.ops.convbench.conv(
            input, weight, bias, list(self.stride), tuning.pads, list(self.dilation),
            self.groups, ",".join(backends), tuning.key, *folded, keep=keep,
        )  # fmt: skip

    def __setstate__(self, state):  # a copy, or an unpickled layer
        super().__setstate__(state)
        if "_convbench" in state:
            _bind(self._convbench, self)


def _eager_inference(input: torch.Tensor) -> bool:
    """A call nothing traces and autograd does not record: a plain tensor, no gradient, no
    compiler. There the ``convbench::conv`` operator would only add its dispatch; anywhere
    else (``torch.compile``, ``torch.export``, a fake or functional tensor, training) the
    operator is what the graph and autograd need."""
    return (
        type(input) is torch.Tensor
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


class TunedConv1d(_TunedConv, nn.Conv1d):
    """An `nn.Conv1d` that runs its tuned backends (made by `optimize`)."""


class TunedConv2d(_TunedConv, nn.Conv2d):
    """An `nn.Conv2d` that runs its tuned backends (made by `optimize`)."""


TUNED = {nn.Conv1d: TunedConv1d, nn.Conv2d: TunedConv2d}


def tune_layer(module: nn.Module, tuning: Tuning) -> None:
    """Make ``module`` (an `nn.Conv1d`/`nn.Conv2d` or a tuned one) run ``tuning``."""
    if not isinstance(module, _TunedConv):
        module.__class__ = TUNED[type(module)]
    module._convbench = tuning
    _bind(tuning, module)


def _bind(tuning: Tuning, module: nn.Module) -> None:
    """What ``tuning`` keeps of its layer: a weak reference, and its padding and convolution
    arguments, worked out once rather than per call."""
    tuning.layer = weakref.ref(module)
    tuning.pads = _pads(module)
    tuning.conv = (tuple(module.stride), tuple(tuning.pads), tuple(module.dilation), module.groups)


#: Where the frames a warning should skip live: torch's package and convbench's.
_LIBRARIES = tuple(
    str(Path(m.__file__).resolve().parent)
    for m in (torch, sys.modules[__package__.partition(".")[0]])
)


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside torch and
    convbench: the user's line that called the model, not `nn.Module.__call__`."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARIES):
        frame, level = frame.f_back, level + 1
    return level


def device_name(device: str | torch.device) -> str:
    """``cpu``, or ``cuda:N`` (``cuda`` alone is device 0): how decisions name devices."""
    dev = torch.device(device)
    return dev.type if dev.type != "cuda" else f"cuda:{dev.index or 0}"
