"""The backend contract: what every convolution backend implements and promises.

A backend computes exactly what `torch.nn.functional.conv1d`/`conv2d` compute (chosen by the
weight's rank), for every argument form those accept, or raises `Unsupported` with the reason.
Work done once per weight (a Winograd filter transform, a filter FFT) lives in `prepare`, which
returns a `Plan`; the per-input work is `plan(input)`. `conv` is `prepare` followed by the plan,
so the runner can time the two separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convbench.errors import Unsupported
from convbench.problem.shapes import IntOrTuple, Padding
from convbench.problem.spec import ConvArgs


@dataclass
class Plan:
    """A backend prepared for one weight and one input shape.

    Calling it runs the per-input work. ``prepared`` holds what `prepare` computed (e.g. the
    transformed filter), kept for inspection and memory accounting.
    """

    backend: str
    args: ConvArgs
    run_batched: Callable[[torch.Tensor], torch.Tensor]
    prepared: dict

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        got = tuple(input.shape) if self.args.unbatched else tuple(input.shape[1:])
        if got != self.args.input_shape[1:]:
            raise ValueError(
                f"{self.backend}: plan was prepared for input shape {self.args.input_shape}, "
                f"got {tuple(input.shape)}"
            )
        x = input.unsqueeze(0) if self.args.unbatched else input
        y = self.run_batched(x)
        return y.squeeze(0) if self.args.unbatched else y


class Backend:
    """Base class. Subclasses set ``name`` and implement `check` and `plan`.

    * ``check(args) -> str | None``: why this configuration cannot be computed, or None.
      It sees only the normalised call (shapes, dtype, device), never data, so `supports`
      can answer for meta tensors.
    * ``plan(args, weight, bias) -> (run_batched, prepared)``: the per-weight work; returns a
      function of the batched, unpadded input.
    """

    name: str = ""
    description: str = ""

    def check(self, args: ConvArgs) -> str | None:
        return None

    def plan(
        self, args: ConvArgs, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
        raise NotImplementedError

    def workspace_bytes(self, args: ConvArgs) -> int:
        """Rough extra memory beyond input, weight and output, for the runner's guard that
        skips CPU cases too large for the machine (not a measurement: the probe measures)."""
        return 0

    # -- public API ---------------------------------------------------------------------
    def supports(
        self,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
    ) -> str | None:
        """None if `conv` with these arguments computes the answer, else the reason it won't.

        Invalid arguments (ones `F.conv` rejects) raise `convbench.ProblemError`.
        """
        args = ConvArgs.from_call(input, weight, bias, stride, padding, dilation, groups)
        return self.check(args)

    def prepare(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        *,
        input: torch.Tensor,
    ) -> Plan:
        """Do the per-weight work for inputs shaped like ``input`` (a meta tensor will do)."""
        args = ConvArgs.from_call(input, weight, bias, stride, padding, dilation, groups)
        if args.device.type == "meta":
            raise ValueError("prepare: pass a tensor on the target device (meta is for supports)")
        reason = self.check(args)
        if reason is not None:
            raise Unsupported(reason)
        run, prepared = self.plan(args, weight, bias)
        return Plan(self.name, args, run, prepared)

    def conv(
        self,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
    ) -> torch.Tensor:
        """Same result as `F.conv1d`/`F.conv2d` (by the weight's rank), or `Unsupported`."""
        plan = self.prepare(weight, bias, stride, padding, dilation, groups, input=input)
        return plan(input)

    __call__ = conv

    def __repr__(self) -> str:
        return f"<convbench backend {self.name!r}>"


# -- helpers shared by the from-scratch backends ------------------------------------------
def pad_input(x: torch.Tensor, args: ConvArgs) -> torch.Tensor:
    """Zero-pad the spatial dims of a batched input by the explicit (before, after) pairs."""
    pads: list[int] = []
    for lo, hi in reversed(args.padding):  # F.pad takes the last dim first
        pads += [lo, hi]
    if not any(pads):
        return x
    return F.pad(x, pads)


def add_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is None:
        return y
    return y + bias.view(1, -1, *([1] * (y.dim() - 2)))
