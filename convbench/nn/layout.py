"""The model's memory format, as `convbench.optimize` keeps it (see `set_layout`)."""

from __future__ import annotations

import torch
from torch import nn

from convbench.store.decisions import MEMORY_FORMATS


def _to_channels_last(module, args):
    return tuple(_convert(a, torch.channels_last) for a in args)


def _to_contiguous(module, args, output):
    return _convert(output, torch.contiguous_format)


def _convert(value, memory_format):
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=memory_format)
    return value


def set_layout(model: nn.Module, memory_format: str) -> None:
    """Keep ``model`` in ``memory_format``: in ``channels_last``, its 4-D parameters and
    buffers are converted, and two hooks on the model convert a 4-D input to it and a 4-D
    output back. The hooks are found by identity, so optimising again (or a deep copy) never
    stacks them."""
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
