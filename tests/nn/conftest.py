"""Builders for the tests of `convbench.nn`: decisions for every conv call of a model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convbench.measure.envinfo import decision_context
from convbench.problem.trace import describe_call
from convbench.store.decisions import DecisionTable


@pytest.fixture
def decisions_for():
    return table


def table(model: nn.Module, x: torch.Tensor, **passes) -> DecisionTable:
    """Decisions for every conv call of ``model`` on ``x``: pass -> backend (or per layer:
    pass -> {layer name: backend})."""
    calls = []

    def hook(module, args):
        calls.append(describe_call(names[module], module, tuple(args[0].shape)))

    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d)}
    handles = [m.register_forward_pre_hook(hook) for m in names]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    entries = []
    for call in calls:
        for name, choice in passes.items():
            backend = choice.get(call.path, "torch") if isinstance(choice, dict) else choice
            entries.append(
                {"problem": call.problem.key, "dtype": "float32", "device": "cpu",
                 "pass": name, "backend": backend, "context": decision_context("cpu")}
            )  # fmt: skip
    return DecisionTable("<test>", entries)
