"""`convbench.optimize`: a model whose convolutions run the backends `convbench tune` chose.

    import convbench
    model = convbench.optimize(model, "vgg16.decisions.json")   # in place; returns the model

Every `nn.Conv1d`/`nn.Conv2d` of the model (of exactly those classes; subclasses with their own
forward are left alone) becomes a `TunedConv1d`/`TunedConv2d`: the same object, its class
swapped, so parameters, buffers, hooks, the state dict's keys and ``isinstance`` checks are
untouched. At each call it looks up the decision for the problem its input makes (problem key,
dtype, device, pass):

* **forward** through the decided backend's plan, prepared once per input shape, device and
  dtype and kept; when the weight changes (an optimizer step bumps its version, or
  `load_state_dict` copies into it) the plan is re-prepared in place (`Plan.refresh`);
* **backward** (when autograd records) through the backends decided for ``backward_data`` and
  ``backward_weight`` — the forward's backend where the decisions hold no backward pass —
  with a `torch.autograd.Function`, so ``loss.backward()`` uses their own gradient passes;
* a layer whose call has no decision (an input shape that was not tuned) runs PyTorch's own
  convolution, with one warning per layer naming it and why.

`model.to(...)`, ``eval()``/``train()`` and `torch.no_grad()` behave as on the original:
plans follow the tensors they are called with.

Where the decisions hold a ``channels_last`` layout (`convbench.store.decisions`), the model's
4-D parameters and buffers are converted to it, and two hooks on the model itself convert a
4-D input to it and a 4-D output back to PyTorch's default layout: the values, shapes and
state-dict keys are those of the original; only the strides in between change.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convbench.backends import get_backend
from convbench.errors import UnknownBackend, UserError
from convbench.problem.spec import ConvArgs
from convbench.runner.from_model import describe_call, layer_names
from convbench.store.decisions import MEMORY_FORMATS, DecisionTable, read


class _MixedConv(torch.autograd.Function):
    """Forward by one plan, the data gradient by a second, the weight gradient by a third
    (any of them the same); what the forward keeps is reused when its backend also computes
    the weight gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, plans):
        forward_plan, data_plan, weight_plan = plans
        y, saved = forward_plan.forward_train(x.detach())
        ctx.plans = plans
        ctx.saved = saved if weight_plan is forward_plan else None
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, dy):
        forward_plan, data_plan, weight_plan = ctx.plans
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"{forward_plan.backend}: double backward (create_graph=True) is not supported "
                "through a tuned convolution"
            )
        (x,) = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dy = dy.contiguous()
        dx = data_plan.backward_data(dy) if need_x else None
        dw = db = None
        if need_w or need_b:
            if ctx.saved is not None:
                _, dw, db = weight_plan.backward(x, dy, ctx.saved, need_data=False)
            else:
                dw, db = weight_plan.backward_weight(x, dy)
        ctx.saved = None
        return dx, (dw if need_w else None), (db if need_b else None), None


@dataclasses.dataclass
class _Call:
    """One input shape of a tuned layer: its normalised call, the backends of its three
    passes, PyTorch's own convolution for it, and the plans (shared by passes that run the
    same backend)."""

    args: ConvArgs
    kw: dict
    backends: tuple[str, str, str]
    conv: Callable
    plans: list


class _Tuning:
    """What a tuned layer keeps: its decisions, its calls (one per input shape), the warnings
    it has given."""

    def __init__(self, name: str, decisions: dict):
        self.name = name
        self.decisions = decisions
        self.calls: dict = {}
        self.warned: set[str] = set()


class _TunedConv:
    """The `_conv_forward` every tuned layer runs (mixed into the two classes below)."""

    _convbench: _Tuning

    def _conv_forward(self, input, weight, bias):
        tuning = self._convbench
        call = tuning.calls.get((input.shape, input.dtype, input.device, weight.dtype))
        if call is None:
            call = self._new_call(input, weight, bias)
        padded = input
        if self.padding_mode != "zeros":  # as nn.Conv does: pad first, then convolve
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        forward, data, grads = call.backends
        recording = torch.is_grad_enabled() and (
            input.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        )
        if not recording:
            if forward == "torch":
                return call.conv(padded, weight, bias)
            return self._plan(call, 0, weight, bias, padded).forward(padded)
        if forward == data == grads == "torch":
            return call.conv(padded, weight, bias)
        plans = tuple(self._plan(call, i, weight, bias, padded) for i in range(3))
        return _MixedConv.apply(padded, weight, bias, plans)

    def _new_call(self, input, weight, bias) -> _Call:
        """Everything about one input shape, worked out once: the problem `convbench tune`
        traced for it, the backends decided for its passes."""
        tuning = self._convbench
        padding = 0 if self.padding_mode != "zeros" else self.padding
        kw = dict(stride=self.stride, padding=padding, dilation=self.dilation, groups=self.groups)
        shape = list(input.shape)
        if self.padding_mode != "zeros":
            pads = self._reversed_padding_repeated_twice
            for i in range(len(pads) // 2):
                shape[-1 - i] += pads[2 * i] + pads[2 * i + 1]
        probe = torch.empty(shape, dtype=input.dtype, device="meta")
        args = ConvArgs.from_call(
            probe,
            weight.to("meta"),
            None if bias is None else bias.to("meta"),
            **kw,
        )
        args = dataclasses.replace(args, device=input.device)
        problem = describe_call(tuning.name, self, tuple(input.shape)).problem
        key = (
            problem.key if problem else "",
            str(input.dtype).removeprefix("torch."),
            device_name(input.device),
        )
        chosen = [tuning.decisions.get((*key, p)) for p in _PASSES]
        if chosen[0] is None:
            if "shape" not in tuning.warned:
                tuning.warned.add("shape")
                warnings.warn(
                    f"convbench: layer {tuning.name!r}: no decision for input shape "
                    f"{list(input.shape)} ({key[1]}, {key[2]}): it runs torch",
                    stacklevel=_user_stacklevel(),
                )
            chosen = ["torch"] * 3
        forward = chosen[0]
        backends = (forward, chosen[1] or forward, chosen[2] or forward)
        conv = F.conv1d if weight.dim() == 3 else F.conv2d
        call = _Call(args, kw, backends, functools.partial(conv, **kw), [None, None, None])
        tuning.calls[(input.shape, input.dtype, input.device, weight.dtype)] = call
        return call

    def _plan(self, call: _Call, index: int, weight, bias, input):
        """The plan of pass ``index``'s backend for this call, prepared once and refreshed in
        place when the weight has changed since (an optimizer step, `load_state_dict`)."""
        state = (weight.data_ptr(), weight._version, None if bias is None else bias._version)
        entry = call.plans[index]
        if entry is None:
            name = call.backends[index]
            shared = next(
                (e for i, e in enumerate(call.plans) if e and call.backends[i] == name), None
            )
            if shared is None:
                # Prepared for the pass it first serves, as `convbench tune` measured it; a
                # pass of the same backend used later prepares itself on first use, and only
                # the passes in use are redone when the weight changes.
                plan = get_backend(name).prepare(
                    weight, bias, **call.kw, input=input, direction=_PASSES[index]
                )
                shared = [plan, state]
            call.plans[index] = entry = shared
        if entry[1] != state:
            entry[0].refresh(weight, bias)
            entry[1] = state
        return entry[0]

    def __getstate__(self):  # plans are rebuilt on first use after unpickling
        state = self.__dict__.copy()
        tuning = state.get("_convbench")
        if tuning is not None:
            fresh = _Tuning(tuning.name, tuning.decisions)
            state["_convbench"] = fresh
        return state


class TunedConv1d(_TunedConv, nn.Conv1d):
    """An `nn.Conv1d` that runs its tuned backends (made by `optimize`)."""


class TunedConv2d(_TunedConv, nn.Conv2d):
    """An `nn.Conv2d` that runs its tuned backends (made by `optimize`)."""


_PASSES = ("forward", "backward_data", "backward_weight")
_TUNED = {nn.Conv1d: TunedConv1d, nn.Conv2d: TunedConv2d}


#: Where the frames a warning should skip live: torch's package and convbench's.
_LIBRARIES = tuple(
    str(Path(m.__file__).resolve().parent) for m in (torch, sys.modules[__package__])
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


def load_decisions(decisions: str | Path | DecisionTable, *, warn: bool = True) -> DecisionTable:
    """A decisions file (or a loaded table) with its stale entries dropped — each with one
    warning saying which and why — and every backend checked to be registered."""
    from convbench.runner.envinfo import decision_context

    table = decisions if isinstance(decisions, DecisionTable) else read(decisions)
    table = table.fresh(decision_context)
    for line in table.ignored if warn else []:
        warnings.warn(f"convbench: {line}", stacklevel=3)
    for i, entry in enumerate(table.entries, start=1):
        try:
            get_backend(entry["backend"])
        except UnknownBackend as exc:
            raise UserError(f"{table.path}: entry #{i}: field 'backend': {exc}") from None
    return table


def optimize(
    model: nn.Module, decisions: str | Path | DecisionTable, *, memory_format: str | None = None
) -> nn.Module:
    """Make every `nn.Conv1d`/`nn.Conv2d` of ``model`` run the backends ``decisions`` chose
    (a decisions file's path, or the table `load_decisions` returns), in the decisions'
    memory format (or ``memory_format``: ``contiguous`` or ``channels_last``). In place;
    returns the model. See the module docstring for what each layer then does."""
    table = load_decisions(decisions)
    _set_layout(model, memory_format or table.memory_format)
    lookup = {key: entry["backend"] for key, entry in table.lookup().items()}
    names = layer_names(model)  # as `convbench tune` and the decisions file name them
    for module in list(names):
        tuned = _TUNED.get(type(module))
        if tuned is None and isinstance(module, _TunedConv):
            module._convbench = _Tuning(module._convbench.name, lookup)  # re-optimised
            continue
        if tuned is None:
            continue
        module.__class__ = tuned
        module._convbench = _Tuning(names[module], lookup)
    return model


def _to_channels_last(module, args):
    return tuple(_convert(a, torch.channels_last) for a in args)


def _to_contiguous(module, args, output):
    return _convert(output, torch.contiguous_format)


def _convert(value, memory_format):
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=memory_format)
    return value


def _set_layout(model: nn.Module, memory_format: str) -> None:
    """Keep ``model`` in ``memory_format`` (see the module docstring); the hooks are found
    by identity, so optimising again (or a deep copy) never stacks them."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(
            f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    ours = (_to_channels_last, _to_contiguous)
    was_channels_last = False
    for hooks in (model._forward_pre_hooks, model._forward_hooks):
        for key in [k for k, fn in hooks.items() if fn in ours]:
            del hooks[key]
            was_channels_last = True
    if memory_format == "channels_last":
        model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_to_channels_last)
        model.register_forward_hook(_to_contiguous)
    elif was_channels_last:  # optimised again, now contiguous: undo what we did
        model.to(memory_format=torch.contiguous_format)


__all__ = ["TunedConv1d", "TunedConv2d", "load_decisions", "optimize"]
