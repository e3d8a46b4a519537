"""Every backend's passes as PyTorch custom operators (`torch.library`), so that a model
running convbench's backends compiles with ``torch.compile(..., fullgraph=True)`` and exports
with `torch.export`: the compiler sees a tuned convolution as one node and fuses around it.

Three operators, one per pass, each naming the backend that computes it:

* ``convbench::conv(x, weight, bias, stride, padding, dilation, groups, backends, key,
  bn_weight, bn_bias, bn_mean, bn_var, bn_eps) -> y`` — the forward by ``backends``' first
  name (``"forward,backward_data,backward_weight"``); with the four ``bn_*`` tensors, the
  convolution with an eval-mode BatchNorm folded into it (`fold_batchnorm`);
* ``convbench::conv_backward_data(dy, weight, bias, input_size, …, backend, key) -> dx``;
* ``convbench::conv_backward_weight(x, dy, weight, bias, …, backend, key) -> (dw, db)``
  (``db`` is empty without a bias).

``conv`` has autograd registered with the two others, so ``loss.backward()`` runs each
backend's own gradient algorithm, eager or compiled. With ``keep`` (a training forward whose
backend also computes the weight gradient), the forward keeps what that gradient may reuse
(Winograd's transformed input tiles, FFT's input spectra) behind the operator, and the weight
gradient takes it — only for the very input it was kept from, unmodified since; otherwise it
computes its own. Double backward is refused with a
`RuntimeError` naming the backend. Each operator has a fake implementation that gives its
outputs' shapes and strides: the forward's output comes out in its input's layout
(`convbench.problem.layout`: contiguous, or channels-last strides), the gradients contiguous.

What is prepared lives behind the operators, never in traced Python: a `LayerPlans` per tuned
layer, found by its integer ``key``, holds one `Plan` per backend, input shape, dtype, device
and fold, shared by the passes that run the same backend, and refreshed in place when the
weight (or the folded BatchNorm) has changed since — an optimizer step bumps a tensor's
version, `load_state_dict` copies into it. A key no layer holds (an exported program run after
its model is gone) gets plans of its own, prepared on first use.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Optional

import torch

from convbench.backends.plan import Plan
from convbench.problem.axes import PASS_NAMES
from convbench.problem.layout import STRIDED, layout_of, to_layout

#: What names one convolution's parameters in the operators: stride, explicit (before,
#: after) padding pairs flattened, dilation, groups.
Conv = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]


class LayerPlans:
    """What one tuned layer has prepared: a plan per backend, input shape, dtype, device and
    fold, with the state of the tensors it was prepared from (see the module docstring)."""

    def __init__(self):
        self.key = next(_KEYS)
        self.entries: dict[tuple, list] = {}
        #: What a training forward kept for the weight gradient (`Plan.forward_train`), per
        #: plan, with the input it was computed from (`_token`); taken by the backward.
        self.kept: dict[tuple, tuple] = {}
        _LAYERS[self.key] = self

    def plan(self, backend, direction, input, weight, bias, conv: Conv, bn=None) -> Plan:
        """The plan of ``backend`` for calls like ``input``'s (a tensor of the input's shape,
        dtype and device), prepared for ``direction`` if new, refreshed if stale."""
        from convbench.backends import get_backend

        tensors = (weight, bias, *(bn or ()))
        state = tuple(
            (t.data_ptr(), t._version) if isinstance(t, torch.Tensor) else t for t in tensors
        )
        index = self.index(backend, input, bn is not None)
        entry = self.entries.get(index)
        if entry is not None and entry[1] == state:
            return entry[0]
        if bn is not None:
            weight, bias = fold_batchnorm(weight, bias, *bn)
        if entry is None:
            stride, padding, dilation, groups = conv
            plan = get_backend(backend).prepare(
                weight, bias, stride, _padding(padding), dilation, groups, input=input,
                direction=direction,
            )  # fmt: skip
            self.entries[index] = entry = [plan, state]
        else:
            entry[0].refresh(weight.detach(), None if bias is None else bias.detach())
            entry[1] = state
        return entry[0]

    @staticmethod
    def index(backend: str, input: torch.Tensor, folded: bool = False) -> tuple:
        return backend, tuple(input.shape), input.dtype, input.device, folded, _layout(input)


def _layout(x: torch.Tensor) -> str:
    """The layout a forward computes in and returns: its input's (strided: contiguous)."""
    found = layout_of(x)
    return "contiguous" if found == STRIDED else found


def _token(x: torch.Tensor) -> tuple:
    """Which tensor, in which state: the weight gradient reuses what the forward kept only for
    the very input it was kept from, unmodified since."""
    return x.data_ptr(), x._version, tuple(x.shape)


_KEYS = itertools.count(1)
_LAYERS: weakref.WeakValueDictionary[int, LayerPlans] = weakref.WeakValueDictionary()
_ORPHANS: dict[int, LayerPlans] = {}


def plans_of(key: int) -> LayerPlans:
    """The plans behind ``key``: its layer's, or (no layer holds it) plans of its own."""
    plans = _LAYERS.get(key) or _ORPHANS.get(key)
    if plans is None:
        plans = LayerPlans()
        _ORPHANS[key] = plans
    return plans


def fold_batchnorm(weight, bias, bn_weight, bn_bias, mean, var, eps: float):
    """The weight and bias of ``batch_norm(conv(x, weight, bias))`` as one convolution, with
    the BatchNorm's running statistics (eval mode): scale each output channel by
    ``γ / √(σ² + ε)`` and shift its bias to match."""
    with torch.no_grad():
        scale = torch.rsqrt(var.double() + eps)
        if bn_weight is not None:
            scale = scale * bn_weight.double()
        shift = -mean.double() * scale
        if bias is not None:
            shift = shift + bias.double() * scale
        if bn_bias is not None:
            shift = shift + bn_bias.double()
        shape = (-1,) + (1,) * (weight.dim() - 1)
        return (weight.double() * scale.view(shape)).to(weight.dtype), shift.to(weight.dtype)


def _padding(flat: tuple[int, ...]) -> tuple[int, ...] | str:
    """The padding argument of explicit (before, after) pairs: symmetric, as ints; else
    ``'same'``, the only asymmetric padding a convolution module makes (stride 1, an even
    span, the smaller half before; `ConvArgs` checks the stride)."""
    pairs = list(zip(flat[::2], flat[1::2], strict=True))
    if all(lo == hi for lo, hi in pairs):
        return tuple(lo for lo, _ in pairs)
    return "same"


def _conv(stride, padding, dilation, groups) -> Conv:
    return tuple(stride), tuple(padding), tuple(dilation), int(groups)


def _output_shape(x, weight, conv: Conv) -> list:
    stride, padding, dilation, _ = conv
    nd = weight.dim() - 2
    spatial = []
    for i in range(nd):
        size = x.shape[x.dim() - nd + i] + padding[2 * i] + padding[2 * i + 1]
        spatial.append((size - dilation[i] * (weight.shape[2 + i] - 1) - 1) // stride[i] + 1)
    return [*x.shape[: x.dim() - nd - 1], weight.shape[0], *spatial]


# -- the operators ----------------------------------------------------------------------------
@torch.library.custom_op("convbench::conv", mutates_args=())
def conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045 (torch.library reads the annotation)
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    backends: str,
    key: int,
    bn_weight: Optional[torch.Tensor] = None,  # noqa: UP045
    bn_bias: Optional[torch.Tensor] = None,  # noqa: UP045
    bn_mean: Optional[torch.Tensor] = None,  # noqa: UP045
    bn_var: Optional[torch.Tensor] = None,  # noqa: UP045
    bn_eps: float = 1e-5,
    keep: bool = False,
) -> torch.Tensor:
    bn = None if bn_mean is None else (bn_weight, bn_bias, bn_mean, bn_var, bn_eps)
    args = _conv(stride, padding, dilation, groups)
    return forward(x, weight, bias, args, backends.split(",")[0], key, bn, keep)


def forward(x, weight, bias, args: Conv, backend: str, key: int, bn=None, keep=False):
    """What ``convbench::conv`` computes: ``backend``'s forward of the layer ``key`` (with
    ``bn``, the BatchNorm folded in; with ``keep``, keeping what its weight gradient may
    reuse). A tuned layer calls it directly in eager inference, where the operator's
    dispatch (its autograd wrapper, a redispatch, a frame Dynamo skips) buys nothing."""
    plans = plans_of(key)
    # a plan that serves the weight gradient too is prepared for both, as tune measured it
    plan = plans.plan(backend, "train" if keep else PASS_NAMES[0], x, weight, bias, args, bn)
    if not keep:
        return to_layout(plan.forward(x), _layout(x))
    y, saved = plan.forward_train(x)
    if saved is not None:  # one per plan: a second forward before the backward replaces it
        plans.kept[plans.index(backend, x)] = (_token(x), saved)
    return to_layout(y, _layout(x))


@conv.register_fake
def _conv_fake(x, weight, bias, stride, padding, dilation, groups, backends, key, *extra):
    y = x.new_empty(_output_shape(x, weight, _conv(stride, padding, dilation, groups)))
    return to_layout(y, _layout(x))


@torch.library.custom_op("convbench::conv_backward_data", mutates_args=())
def conv_backward_data(
    dy: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045 (the plan's, shared with the other passes)
    input_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    backend: str,
    key: int,
) -> torch.Tensor:
    args = _conv(stride, padding, dilation, groups)
    like = dy.new_empty(input_size)  # the plan's input shape (its values are never read)
    plan = plans_of(key).plan(backend, PASS_NAMES[1], like, weight, bias, args)
    return plan.backward_data(dy.contiguous()).contiguous()


@conv_backward_data.register_fake
def _backward_data_fake(dy, weight, bias, input_size, *rest):
    return dy.new_empty(input_size)


@torch.library.custom_op("convbench::conv_backward_weight", mutates_args=())
def conv_backward_weight(
    x: torch.Tensor,
    dy: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],  # noqa: UP045
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    backend: str,
    key: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    args = _conv(stride, padding, dilation, groups)
    plans = plans_of(key)
    plan = plans.plan(backend, PASS_NAMES[2], x, weight, bias, args)
    token, saved = plans.kept.pop(plans.index(backend, x), (None, None))
    if token == _token(x):
        _, dw, db = plan.backward(x, dy.contiguous(), saved, need_data=False)
    else:
        dw, db = plan.backward_weight(x, dy.contiguous())
    return dw.contiguous(), (db if db is not None else weight.new_empty(0))


@conv_backward_weight.register_fake
def _backward_weight_fake(x, dy, weight, bias, *rest):
    db = weight.new_empty(weight.shape[0] if bias is not None else 0)
    return weight.new_empty(weight.shape), db


def _setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, backends, key = inputs[:9]
    ctx.save_for_backward(x, weight, bias)
    ctx.conv = (list(stride), list(padding), list(dilation), groups)
    ctx.backends, ctx.key = backends.split(","), key


def _backward(ctx, dy):
    x, weight, bias = ctx.saved_tensors
    _, data, grads = ctx.backends
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(
            f"{'/'.join(ctx.backends)}: double backward (create_graph=True) is not supported "
            "through a tuned convolution"
        )
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    dx = dw = db = None
    if need_x:
        dx = conv_backward_data(dy, weight, bias, list(x.shape), *ctx.conv, data, ctx.key)
    if need_w or need_b:
        dw, db = conv_backward_weight(x, dy, weight, bias, *ctx.conv, grads, ctx.key)
    return (dx, dw if need_w else None, db if need_b else None) + (None,) * 12


conv.register_autograd(_backward, setup_context=_setup)

__all__ = ["LayerPlans", "conv", "conv_backward_data", "conv_backward_weight", "fold_batchnorm"]
