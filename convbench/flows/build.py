"""The models `convbench tune` times end to end, each a `Variant` of the original: which
decisions it runs (the tuned ones, or torch throughout), its memory format, whether the
BatchNorms that follow tuned layers are folded into them, and whether it is compiled.

`convbench.flows.variants` chooses among them; this module says which apply to a model
(`applicable`), builds them (`build`) and records the kept one (`layout_record`: what
`convbench.optimize` applies from the decisions file).

The compiled variants are what users run: ``torch.compile`` of the original — the one line
every user has — and of the tuned model. In a tune of inference alone they are compiled with
Inductor's freezing (weights become constants: prepacked oneDNN weights, BatchNorm folded
into torch's convolutions); a tune that also times a training step compiles them without it,
since freezing would keep stale weights in a model that trains. Where Inductor cannot run on
the device (no C++ compiler on the CPU, no Triton on CUDA, another device) they are skipped,
with one line saying why (`inductor_unavailable`).
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from dataclasses import dataclass

import torch
from torch import nn

from convbench.analysis.decisions import BASELINE
from convbench.analysis.layout_plan import PLANNED
from convbench.measure.endtoend import ORIGINAL
from convbench.measure.envinfo import decision_context
from convbench.store.decisions import DecisionTable

TUNED, FOLDED = "tuned", "tuned, folded"
TUNED_CL, TORCH_CL = "tuned, channels_last", "torch, channels_last"
COMPILED, TUNED_COMPILED = "torch.compile(original)", "torch.compile(tuned)"
PLANNED_COMPILED = "torch.compile(per-layer plan)"


@dataclass(frozen=True)
class Variant:
    """One model timed end to end (module docstring). ``inference_only``: it differs from
    another variant at inference alone (a fold), so it is timed there alone."""

    name: str
    tuned: bool = True
    memory_format: str = "contiguous"
    folded: bool = False
    compiled: bool = False
    inference_only: bool = False
    per_layer: bool = False  # the per-layer plan's backends and layouts (`flows.plan`)
    without: str | None = None  # the plan's layers on this backend back on torch (`without`)


VARIANTS = {
    v.name: v
    for v in (
        Variant(TUNED),
        Variant(FOLDED, folded=True, inference_only=True),
        Variant(PLANNED, folded=True, per_layer=True, inference_only=True),
        Variant(TUNED_CL, memory_format="channels_last"),
        Variant(TORCH_CL, tuned=False, memory_format="channels_last"),
        Variant(COMPILED, tuned=False, compiled=True),
        Variant(TUNED_COMPILED, folded=True, compiled=True),
        Variant(PLANNED_COMPILED, folded=True, per_layer=True, compiled=True, inference_only=True),
    )
}


def without(backend: str) -> Variant:
    """The compiled per-layer plan with its layers on ``backend`` back on torch (in the layout
    the plan gave them). A layer that saves time in eager can cost time inside the compiled
    graph, where the compiler fuses torch's convolutions with their neighbours and prepacks
    their weights; timing the plan without each of its backends shows which of them pay
    there, by the same end-to-end rule as every variant."""
    name = f"torch.compile(per-layer plan without {backend})"
    return Variant(name, folded=True, per_layer=True, compiled=True, inference_only=True,
                   without=backend)  # fmt: skip


def plan_backends(table: DecisionTable) -> list[str]:
    """The backends other than torch the per-layer plan runs, in the order it first runs them."""
    steps = (table.plan or {}).get("layers", [])
    return list(dict.fromkeys(s["backend"] for s in steps if s["backend"] != BASELINE))


def restricted(table: DecisionTable, backend: str) -> DecisionTable:
    """``table`` with its plan's layers on ``backend`` back on torch, in the same layout."""
    plan = copy.deepcopy(table.plan)
    revert(plan, backend)
    return DecisionTable(table.path, table.entries, table.model, plan=plan)


def revert(plan: dict, backend: str, reason: str = "") -> None:
    """``plan``'s layers on ``backend`` back on torch, in place, each keeping the backend it
    had (``reverted_from``) and, where given, why."""
    for step in plan["layers"]:
        if step["backend"] == backend:
            step.update(backend=BASELINE, reverted_from=backend)
            if reason:
                step["reason"] = reason


def applicable(model: nn.Module, table: DecisionTable, folds, compiled: bool) -> list[Variant]:
    """The variants worth timing for ``model``: a fold only where there are ``folds``, a
    channels_last one only with 2-D convolutions, the per-layer plan only where it computes
    a layer in another layout than contiguous, torch throughout only where a decision left
    torch, the compiled ones only where ``compiled``, and the compiled plan without each of
    its backends (`without`) where it runs more than one."""
    off_torch = any(e["backend"] != BASELINE for e in table.entries)
    steps = (table.plan or {}).get("layers", [])
    has_2d = any(isinstance(m, nn.Conv2d) for m in model.modules())
    planned = any(step["layout"] != "contiguous" for step in steps)
    wanted = {
        TUNED: True,
        FOLDED: bool(folds),
        PLANNED: planned,
        TUNED_CL: has_2d,
        TORCH_CL: has_2d and off_torch,
        COMPILED: compiled,
        TUNED_COMPILED: compiled and (off_torch or bool(folds)),
        PLANNED_COMPILED: compiled and planned,
    }
    found = [VARIANTS[name] for name, keep in wanted.items() if keep]
    if compiled and planned and len(backends := plan_backends(table)) > 1:
        found += [without(backend) for backend in backends]
    return found


def compile_options(modes) -> dict:
    """The keyword arguments of `torch.compile` for the compiled variants (module doc):
    static shapes — a tuned layer's decision is a constant of the graph only for a static
    input shape, so a new shape compiles again rather than breaking the graph."""
    if tuple(modes) == ("inference",):
        return {"dynamic": False, "options": {"freezing": True}}
    return {"dynamic": False}


def layout_record(
    variant: Variant | None, reason: str, device: str, folds=(), compile_kwargs=None, **extra
) -> dict:
    """The decisions file's model-level record of ``variant`` (None: the original, as it
    was): its memory format, folds and compile options, where it holds them."""
    from convbench.nn import device_name

    variant = variant or Variant(ORIGINAL, tuned=False)
    return dict(
        memory_format=variant.memory_format, device=device_name(device),
        context=decision_context(device), variant=variant.name, reason=reason,
        folds=[list(pair) for pair in folds] if variant.folded else [],
        compile=compile_kwargs if variant.compiled else None, per_layer=variant.per_layer,
        **extra,
    )  # fmt: skip


def torch_throughout(entries: list[dict]) -> list[dict]:
    return [dict(e, backend=BASELINE, options={}) for e in entries]


def build(
    original: nn.Module, table: DecisionTable, variant: Variant, device: str, folds, compile_kwargs
) -> nn.Module:
    """A copy of ``original`` made into ``variant`` (with ``table``'s decisions; ``folds``
    are the variant's own: `convbench.flows.variants.folds_of` its table, ``per_layer`` as
    the variant is)."""
    from convbench.nn import compile_in_place, optimize

    if variant.without:
        table = restricted(table, variant.without)
    entries = table.entries if variant.tuned else torch_throughout(table.entries)
    layout = layout_record(variant, "", device, folds, compile_kwargs)
    decisions = DecisionTable(table.path, entries, table.model, layout=layout, plan=table.plan)
    model = optimize(copy.deepcopy(original), decisions, compile=False)
    if variant.compiled:
        compile_in_place(model, **compile_kwargs)
    return model


def inductor_unavailable(device: str) -> str | None:
    """Why Inductor cannot compile for ``device`` here, or None."""
    kind = torch.device(device).type
    if kind == "cpu":
        compilers = [os.environ.get("CXX") or "", "g++", "clang++", "c++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "no C++ compiler (g++, clang++, $CXX) for Inductor's CPU code"
        return None
    if kind == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (Inductor's CUDA code)"
    return f"Inductor does not compile for device {kind!r}"


def first_call_s(model: nn.Module, x: torch.Tensor, mode: str) -> float:
    """Seconds of a compiled model's first call in ``mode`` (an inference, or a forward and
    backward without a step): the compile time."""
    start = time.perf_counter()
    if mode == "inference":
        model.eval()
        with torch.no_grad():
            model(x)
    else:
        model.train()
        model(x).float().square().mean().backward()
        model.zero_grad(set_to_none=True)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start
