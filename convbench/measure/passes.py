"""What each direction times, and the answer it must give.

`pass_run` builds, for one backend, direction and set of tensors, the call that the timing
engine repeats, the backend's answer (computed once, for the error columns) and the per-weight
work timed apart:

=================  ==========================================  ===============================
direction          timed call                                  answer checked
=================  ==========================================  ===============================
forward            ``plan.forward(x)``                         y
backward_data      ``plan.backward_data(dy)``                  dL/dx
backward_weight    ``plan.backward_weight(x, dy)``             dL/dw (and dL/db)
backward           ``plan.backward(x, dy, saved)`` after one   dL/dx, dL/dw (and dL/db)
                   ``forward_train``, reusing what it kept
train              ``refresh(w)`` + ``forward_train`` +        y, dL/dx, dL/dw (and dL/db)
                   ``backward``: a step whose weight changed
=================  ==========================================  ===============================

The plan is prepared once outside the timed call (its time is ``prepare_ms``). In ``train``
the weight changes every step, so redoing the per-weight work is part of the step: as a
training loop keeps its plan, the step re-prepares it in place (`Plan.refresh`: the
transformed filter or filter spectrum rewritten in the plan's buffers, not reallocated). ``dy`` is a
fixed, seeded upstream gradient. `convbench run` and the pytest plugin both use this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from convbench.backends.plan import Plan
from convbench.problem.axes import DIRECTIONS


@dataclass
class PassRun:
    """One direction made ready to time: ``fn`` (the timed call; it returns what ``got``
    holds), ``got`` (the backend's answer, in `convbench.measure.reference`'s order),
    ``prepare`` (the per-weight work, for ``prepare_ms``), ``saved_bytes`` (what a training
    forward kept for the backward; None where no forward ran)."""

    fn: Callable[[], object]
    got: tuple[torch.Tensor, ...]
    prepare: Callable[[], Plan]
    saved_bytes: int | None = None
    prepared: dict | None = None


def upstream_gradient(shape, dtype, device, seed: int) -> torch.Tensor:
    """The fixed dL/dy every backward direction uses: seeded N(0,1), drawn in float64."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def pass_run(backend, direction: str, x, w, b, dy, conv_kwargs: dict) -> PassRun:
    """Prepare ``backend`` for ``direction`` and return what to time and check."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {', '.join(DIRECTIONS)}, got {direction!r}")

    def prepare() -> Plan:
        return backend.prepare(w, b, **conv_kwargs, input=x, direction=direction)

    def grads(dx, dw, db):
        return (dx, dw) if b is None else (dx, dw, db)

    with torch.no_grad():
        plan = prepare()
        if direction == "forward":
            got = (plan.forward(x),)

            def fn():
                return (plan.forward(x),)

            return PassRun(fn, got, prepare, prepared=plan.prepared)
        if direction == "backward_data":
            got = (plan.backward_data(dy),)

            def fn():
                return (plan.backward_data(dy),)

            return PassRun(fn, got, prepare, prepared=plan.prepared)
        if direction == "backward_weight":
            dw, db = plan.backward_weight(x, dy)
            got = (dw,) if b is None else (dw, db)

            def fn():
                dw, db = plan.backward_weight(x, dy)
                return (dw,) if b is None else (dw, db)

            return PassRun(fn, got, prepare, prepared=plan.prepared)
        y, saved = plan.forward_train(x)
        kept = Plan.saved_bytes(saved)
        if direction == "backward":
            got = grads(*plan.backward(x, dy, saved))

            def fn():
                return grads(*plan.backward(x, dy, saved))

            return PassRun(fn, got, prepare, kept, plan.prepared)
        got = (y, *grads(*plan.backward(x, dy, saved)))

        def fn():
            plan.refresh(w, b)
            y, kept_now = plan.forward_train(x)
            return (y, *grads(*plan.backward(x, dy, kept_now)))

        return PassRun(fn, got, prepare, kept, plan.prepared)
