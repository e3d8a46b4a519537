"""Kept for the import path version 1 documented (``from convbench.modeltime import ...``); the
code lives in `convbench.analysis.modeltime`."""

from convbench.analysis.modeltime import (  # noqa: F401
    MIX,
    best_mix,
    has_layer_counts,
    model_totals,
    render,
)
