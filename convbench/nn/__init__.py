"""`convbench.optimize`: a model whose convolutions run the backends `convbench tune` chose.

    import convbench
    model = convbench.optimize(model, "vgg16.decisions.json")   # in place; returns the model

Every `nn.Conv1d`/`nn.Conv2d` of the model (of exactly those classes; subclasses with their own
forward are left alone) becomes a `TunedConv1d`/`TunedConv2d`: the same object, its class
swapped, so parameters, buffers, hooks, the state dict's keys and ``isinstance`` checks are
untouched. At each call it looks up the decision for the problem its input makes (problem key,
dtype, device, pass), once per input shape (`convbench.nn.layers`):

* **forward** through the decided backend's plan, prepared once per input shape, device and
  dtype and kept; when the weight changes (an optimizer step bumps its version, or
  `load_state_dict` copies into it) the plan is re-prepared in place (`Plan.refresh`);
* **backward** (when autograd records) through the backends decided for ``backward_data`` and
  ``backward_weight`` — the forward's backend where the decisions hold no backward pass — so
  ``loss.backward()`` uses their own gradient passes;
* a layer whose call has no decision (an input shape that was not tuned) runs PyTorch's own
  convolution, with one warning per layer naming it and why.

The passes run as PyTorch custom operators (`convbench.backends.library`), so
``torch.compile(model, fullgraph=True)`` compiles the optimized model without a graph break,
and `torch.export` exports it. `model.to(...)`, ``eval()``/``train()`` and `torch.no_grad()`
behave as on the original: plans follow the tensors they are called with.

The decisions' model-level record (``layout``, `convbench.store.decisions`) may also hold:

* a ``channels_last`` memory format: the model's 4-D parameters and buffers are converted to
  it, and two hooks on the model itself convert a 4-D input to it and a 4-D output back to
  PyTorch's default layout (`convbench.nn.layout`);
* ``folds``: BatchNorms folded into the tuned convolution before them at inference
  (`convbench.nn.fold`);
* ``per_layer``: the decisions file's per-layer ``plan`` applies: each planned layer runs the
  plan's backend for its forward, in the plan's layout (its weight kept in it, its input
  converted to it where it arrives in another);
* ``compile``: the options of `torch.compile` the kept model was measured with. ``optimize``'s
  ``compile`` argument says what to do with it: ``None`` compiles in place
  (`nn.Module.compile`, so the module object and its state-dict keys stay) where the file
  says so, ``False`` never, ``True`` always (with the file's options, else torch's defaults).

The values, shapes and state-dict keys are those of the original throughout.
"""

from __future__ import annotations

import itertools
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from convbench.backends import get_backend
from convbench.errors import UnknownBackend, UserError
from convbench.nn import fold
from convbench.nn.layers import TUNED, TunedConv1d, TunedConv2d, Tuning, device_name, tune_layer
from convbench.nn.layout import set_layout
from convbench.problem.layout import to_layout
from convbench.problem.trace import layer_names
from convbench.store.decisions import DecisionTable, read


def load_decisions(decisions: str | Path | DecisionTable, *, warn: bool = True) -> DecisionTable:
    """A decisions file (or a loaded table) with its stale entries dropped — each with one
    warning saying which and why — and every backend checked to be registered."""
    from convbench.measure.envinfo import decision_context

    table = decisions if isinstance(decisions, DecisionTable) else read(decisions)
    table = table.fresh(decision_context)
    for line in table.ignored if warn else []:
        warnings.warn(f"convbench: {line}", stacklevel=3)
    steps = (table.plan or {}).get("layers", [])
    named = [(f"entry #{i}", e) for i, e in enumerate(table.entries, start=1)]
    named += [(f"plan: layer #{i}", step) for i, step in enumerate(steps, start=1)]
    for where, record in named:
        try:
            get_backend(record["backend"])
        except UnknownBackend as exc:
            raise UserError(f"{table.path}: {where}: field 'backend': {exc}") from None
    return table


def optimize(
    model: nn.Module,
    decisions: str | Path | DecisionTable,
    *,
    memory_format: str | None = None,
    compile: bool | None = None,
) -> nn.Module:
    """Make every `nn.Conv1d`/`nn.Conv2d` of ``model`` run the backends ``decisions`` chose
    (a decisions file's path, or the table `load_decisions` returns), in the decisions'
    memory format (or ``memory_format``: ``contiguous`` or ``channels_last``), with the
    decisions' BatchNorm folds, and compiled as ``compile`` and the decisions say (see the
    module docstring). In place; returns the model."""
    table = load_decisions(decisions)
    set_layout(model, memory_format or table.memory_format)
    lookup = {key: entry["backend"] for key, entry in table.lookup().items()}
    try:
        folded = fold.resolve(model, table.folds, f"{table.path}: layout")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    steps = _plan_steps(table)
    for module, name in layer_names(model).items():  # named as `convbench tune` names them
        if type(module) in TUNED or isinstance(module, tuple(TUNED.values())):
            decisions, layout = steps.get(name, (lookup, None))
            if layout is not None and module.weight.dim() == 4:
                module.weight.data = to_layout(module.weight.data, layout)
            tune_layer(module, Tuning(name, decisions, folded.get(module), layout))
    fold.mark(model, folded)
    options = table.compile
    if compile is True or (compile is None and options is not None):
        compile_in_place(model, **(options or {}))
    return model


def _plan_steps(table: DecisionTable) -> dict[str, tuple[dict, str]]:
    """Per layer of the per-layer plan (where the kept variant applies it): its decisions —
    the entries', with the plan's backend for its forward — and the layout it computes in."""
    plan = table.per_layer
    if plan is None:
        return {}
    lookup = {key: entry["backend"] for key, entry in table.lookup().items()}
    found = {}
    for step in plan["layers"]:
        key = (step["problem"], plan["dtype"], plan["device"], "forward")
        found[step["layer"]] = ({**lookup, key: step["backend"]}, step["layout"])
    return found


def compile_in_place(model: nn.Module, **options) -> nn.Module:
    """``torch.compile`` the whole of ``model`` in place, as `nn.Module.compile` does (the
    module object, its hooks and state-dict keys stay; a deep copy or a pickle drops it), with
    ``options`` (`torch.compile`'s keyword arguments). Unlike `nn.Module.compile`, this also
    compiles a model whose own forward is torch's (an `nn.Sequential`): Dynamo skips
    torch.nn's frames at the top of a compile, so ``nn.Sequential(...).compile()`` compiles
    nothing of its own, and each layer's Python is compiled on its own instead. Here the top
    frame is this module's, and the model's call is traced whole from it."""

    def call(*args, **kwargs):
        return model._call_impl(*args, **kwargs)

    # Dynamo keeps its compiled graphs per code object, up to its recompile limit (8): each
    # model gets a code object of its own, so that compiling many never spends one budget.
    code = call.__code__.replace(co_name=f"{type(model).__name__}_{next(_COMPILED)}")
    own = types.FunctionType(code, call.__globals__, code.co_name, None, call.__closure__)
    model._compiled_call_impl = torch.compile(own, **options)
    return model


_COMPILED = itertools.count(1)


__all__ = [
    "TunedConv1d",
    "TunedConv2d",
    "compile_in_place",
    "device_name",
    "load_decisions",
    "optimize",
]
