"""Folding an eval-mode BatchNorm into the tuned convolution it directly follows, as compilers
fold it into their own convolutions.

`foldable` finds the pairs: a convolution whose output is read by one BatchNorm and nothing
else (no residual, no in-place activation in between), each called once, the BatchNorm
tracking running statistics. It runs the model once and watches every torch function called
(`torch.overrides.TorchFunctionMode`), so it holds for any model, traceable or not.

A folded pair works at inference only — the BatchNorm in eval mode and autograd off: the
convolution's plan is prepared from the folded weight and bias
(`convbench.backends.library.fold_batchnorm`) and the BatchNorm (its class swapped to a
`FoldedBatchNorm1d`/`2d`) passes its input through. Parameters, buffers and the state dict
are untouched; in ``train()``, or with autograd on, both run as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from convbench.problem.trace import layer_names

BATCHNORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


class _Folded:
    """The forward of a BatchNorm folded into the convolution before it."""

    def forward(self, input):
        if not self.training and not torch.is_grad_enabled():
            return input  # the convolution has applied it
        return super().forward(input)


class FoldedBatchNorm1d(_Folded, nn.BatchNorm1d):
    """An `nn.BatchNorm1d` folded into the tuned convolution before it (see the module doc)."""


class FoldedBatchNorm2d(_Folded, nn.BatchNorm2d):
    """An `nn.BatchNorm2d` folded into the tuned convolution before it (see the module doc)."""


_FOLDED = {nn.BatchNorm1d: FoldedBatchNorm1d, nn.BatchNorm2d: FoldedBatchNorm2d}
_UNFOLDED = {v: k for k, v in _FOLDED.items()}


class _Uses(TorchFunctionMode):
    """Counts, for each watched tensor, the torch functions that read it and return a tensor
    (a view, an in-place op, a BatchNorm …; shape queries are not uses)."""

    def __init__(self):
        super().__init__()
        self.watched: dict[int, torch.Tensor] = {}
        self.uses: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) for t in tree_leaves(out)):
            for leaf in tree_leaves((args, kwargs or {})):
                if isinstance(leaf, torch.Tensor) and id(leaf) in self.watched:
                    self.uses[id(leaf)] += 1
        return out


def foldable(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """The (convolution, BatchNorm) name pairs of ``model`` that can be folded (module
    docstring), found by one forward on ``x`` in eval mode without autograd. Convolutions are
    named as `convbench tune` names them; BatchNorms by their module path."""
    convs = layer_names(model)
    bns = {m: n for n, m in model.named_modules() if type(m) in BATCHNORMS.values()}
    calls: Counter = Counter()
    outputs: dict[nn.Module, torch.Tensor] = {}
    inputs: dict[nn.Module, torch.Tensor] = {}
    mode = _Uses()

    def after_conv(module, args, output):
        calls[module] += 1
        outputs[module] = output
        mode.watched[id(output)] = output

    def before_bn(module, args):
        calls[module] += 1
        inputs[module] = args[0]

    tunable = [m for m in convs if type(m) in (nn.Conv1d, nn.Conv2d)]
    handles = [m.register_forward_hook(after_conv) for m in tunable]
    handles += [m.register_forward_pre_hook(before_bn) for m in bns]
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), mode:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.training = flag
    pairs = []
    for bn, seen in inputs.items():
        conv = next((c for c, y in outputs.items() if y is seen), None)
        if conv is None or calls[conv] != 1 or calls[bn] != 1 or mode.uses[id(seen)] != 1:
            continue
        if type(bn) is BATCHNORMS.get(conv.weight.dim() - 2) and _tracks(bn, conv):
            pairs.append((convs[conv], bns[bn]))
    return pairs


def _tracks(bn: nn.Module, conv: nn.Module) -> bool:
    return (
        bool(bn.track_running_stats)
        and bn.running_mean is not None
        and (bn.num_features == conv.out_channels)
    )


def resolve(model: nn.Module, pairs: Iterable[Iterable[str]], where: str) -> dict:
    """{convolution module: BatchNorm module} of ``pairs`` (names as `foldable` gives them);
    a name the model does not hold is a `ValueError` naming ``where``."""
    convs = {name: m for m, name in layer_names(model).items()}
    modules = dict(model.named_modules())
    found = {}
    for conv_name, bn_name in pairs:
        conv, bn = convs.get(conv_name), modules.get(bn_name)
        if conv is None or type(bn) not in (*_FOLDED, *_UNFOLDED):
            raise ValueError(f"{where}: fold {conv_name!r} → {bn_name!r}: not in the model")
        found[conv] = bn
    return found


def mark(model: nn.Module, folded: Mapping[nn.Module, nn.Module]) -> None:
    """Swap the class of every BatchNorm in ``folded``'s values to its folded form, and
    every other folded BatchNorm of ``model`` back (optimising again without a fold)."""
    chosen = set(folded.values())
    for module in model.modules():
        if module in chosen and type(module) in _FOLDED:
            module.__class__ = _FOLDED[type(module)]
        elif module not in chosen and type(module) in _UNFOLDED:
            module.__class__ = _UNFOLDED[type(module)]
