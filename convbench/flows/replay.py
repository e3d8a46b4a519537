"""The per-layer plan's prediction: its convolutions replayed as the planned model calls them.

`convbench tune` measures each layer's options warm — many calls back to back, the layer's
weight and buffers in cache. That ranks the options of one layer fairly, and the plan
(`convbench.flows.plan`) is chosen on those figures; but it underprices a small layer that
runs once per forward in the model, where the layers before it have filled the caches with
their own weights and activations. The plan's predicted convolution time is therefore taken
from a replay (`replay_plan`):

1. the planned model is built as the `tuned, per-layer layouts` variant is, without its
   BatchNorm folds (the prediction is of the convolutions);
2. one eager forward records the sizes and strides each convolution call's input arrives
   with (`arriving`): its layout under the plan, the channels-last strides a permute hands on
   included;
3. per round, every planned call runs once, in execution order, through the tuned module's
   own forward — its conversion where the plan switches, its route, its backend — on a seeded
   input of those sizes and strides, written just before the call (untimed) as the op that
   produces it in the model writes it, each call timed by the device's clock. A layer's figure
   is its median over the rounds (at least `MIN_ROUNDS` and `REPLAY_S`, at most
   `MAX_ROUNDS`); the prediction is their sum.

What the replay leaves out is what runs between the convolutions in the model — BatchNorms,
activations, pooling, an MLP's `nn.Linear` layers — and what it leaves in the caches; `convbench
tune` prints the prediction beside the planned model's measured time.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch import nn

from convbench.flows.arrivals import hooked_forward
from convbench.measure.clocks import clock_for
from convbench.measure.pace import reference
from convbench.store.decisions import DecisionTable

#: The replay's rounds: at least `MIN_ROUNDS` and `REPLAY_S` seconds, at most `MAX_ROUNDS`.
#: The host's pace moves in bursts of seconds, so the rounds of a fast model are spread over
#: several seconds rather than taken within one.
MIN_ROUNDS, MAX_ROUNDS, REPLAY_S = 10, 50, 5.0

Arrival = tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]


def arriving(model: nn.Module, x: torch.Tensor) -> list[Arrival]:
    """Each convolution call of one eager inference forward of ``model`` on ``x``, in order:
    the layer's name, its module, and the sizes and strides of the input it is called with."""
    calls: list[Arrival] = []
    hooked_forward(
        model, x, lambda name, mod, t: calls.append((name, mod, tuple(t.shape), t.stride()))
    )
    return calls


def seeded_like(size, stride, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A tensor of ``size`` and ``stride`` on ``like``'s device in its dtype, filled from
    ``gen`` (on the CPU, so that every device gets the same values)."""
    t = torch.empty_strided(size, stride, dtype=like.dtype, device=like.device)
    return t.copy_(torch.randn(size, generator=gen, dtype=torch.float64))


def written(t: torch.Tensor) -> None:
    """Write ``t`` in place, values unchanged, as the op that produces a layer's input in the
    model has just written it: what of it fits stays in the caches, as it does there."""
    t.mul_(1.0)


def replay_ms(calls: list[Arrival], like: torch.Tensor) -> tuple[list[float], float | None]:
    """Milliseconds of each of ``calls`` (`arriving`'s, in execution order), replayed once per
    round on seeded inputs of their sizes and strides, in ``like``'s dtype and on its device
    (module docstring): the medians over the rounds; and on the CPU the host's pace over
    them (`convbench.measure.pace`: the reference kernel's median reading in µs, one reading
    a round), else None."""
    gen = torch.Generator().manual_seed(0)
    inputs = [seeded_like(size, stride, like, gen) for _, _, size, stride in calls]
    fns: list[Callable[[], object]] = [
        lambda m=mod, t=t: m(t) for (_, mod, _, _), t in zip(calls, inputs, strict=True)
    ]
    clock = clock_for(like.device)
    samples: list[list[int]] = [[] for _ in calls]
    pace = reference() if like.device.type == "cpu" else None
    readings: list[int] = []
    with torch.no_grad():
        for fn in fns:  # one untimed round: routes found, plans prepared
            fn()
        start = clock.now_ns()
        while samples and len(samples[0]) < MAX_ROUNDS:
            for fn, t, found in zip(fns, inputs, samples, strict=True):
                written(t)
                found.append(clock.time_block(fn, 1))
            if pace is not None:
                readings.append(pace.take())
            spent_s = (clock.now_ns() - start) / 1e9
            if len(samples[0]) >= MIN_ROUNDS and spent_s >= REPLAY_S:
                break
    pace_us = statistics.median(readings) / 1e3 if readings else None
    return [statistics.median(found) / 1e6 for found in samples], pace_us


def replay_plan(original: nn.Module, table: DecisionTable, x: torch.Tensor) -> str:
    """Replay ``table``'s per-layer plan (module docstring) and record, in the plan, each
    step's ``replay_ms`` and the prediction, ``predicted_ms`` (their sum), with the host's
    pace during the replay (``replay_pace_us``, on the CPU: a figure taken in another minute
    compares at equal pace); ``plan_ms`` keeps what the plan minimised. Returns one line
    saying what was predicted, or why nothing was."""
    from convbench.flows.build import PLANNED, VARIANTS, build

    plan = table.plan
    steps = plan["layers"]
    names = {s["layer"] for s in steps}
    model = build(original, table, VARIANTS[PLANNED], str(x.device), (), None).eval()
    calls = [call for call in arriving(model, x) if call[0] in names]
    if [name for name, *_ in calls] != [s["layer"] for s in steps]:
        return ("per-layer plan: not replayed — the planned model called its convolutions in "
                "another order than the plan; predicted as measured apart")  # fmt: skip
    found, plan["replay_pace_us"] = replay_ms(calls, x)
    for step, ms in zip(steps, found, strict=True):
        step["replay_ms"] = ms
    plan["predicted_ms"] = sum(s["replay_ms"] for s in steps)
    return (
        f"per-layer plan: predicted convolution time {plan['predicted_ms']:.2f} ms, its layers "
        f"replayed in execution order ({plan['conv_ms'] + plan['convert_ms']:.2f} ms measured "
        "apart, back to back)"
    )
