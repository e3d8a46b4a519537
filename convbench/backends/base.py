"""The backend contract: what every convolution backend implements and promises.

A backend computes exactly what `torch.nn.functional.conv1d`/`conv2d` compute (chosen by the
weight's rank), for every argument form those accept — and, for training, exactly PyTorch's
gradients — or raises `Unsupported` with the reason, before touching data. Work done once
per weight (a Winograd filter transform, a filter FFT) lives in `prepare`, which returns a
`Plan` (`convbench.backends.plan`); the per-input work is the plan's passes. `conv` is
`prepare` followed by the plan's forward, so the runner can time the two separately.

Subclasses set ``name`` and implement:

* ``check(args) -> str | None``: why this configuration cannot be computed at all, or None.
  It sees only the normalised call (shapes, dtype, device), never data, so `supports` can
  answer for meta tensors.
* ``check_pass(args, direction) -> str | None`` (optional): why one pass (see
  `convbench.problem.axes.DIRECTIONS`) cannot be computed although the forward can.
* ``plan(args, weight, bias) -> Passes``: the per-weight work; see `convbench.backends.plan`.
"""

from __future__ import annotations

import torch

from convbench.backends.plan import Passes, Plan
from convbench.errors import Unsupported
from convbench.problem.axes import DIRECTIONS, PASS_NAMES, passes_of
from convbench.problem.shapes import IntOrTuple, Padding
from convbench.problem.spec import ConvArgs


class Backend:
    """Base class of every backend; see the module docstring for what subclasses implement."""

    name: str = ""
    description: str = ""
    #: False for a test backend that runs only where a suite or flag names it
    #: (`convbench.backends.backend_names`).
    listed: bool = True

    def check(self, args: ConvArgs) -> str | None:
        return None

    def check_pass(self, args: ConvArgs, direction: str) -> str | None:
        return None

    def plan(self, args: ConvArgs, weight: torch.Tensor, bias: torch.Tensor | None):
        raise NotImplementedError

    def workspace_bytes(self, args: ConvArgs) -> int:
        """Rough extra memory beyond input, weight and output, for the runner's guard that
        skips CPU cases too large for the machine (not a measurement: the probe measures)."""
        return 0

    #: How this backend computes its gradients (one line, for listings and the README).
    backward_method: str = Passes.backward_method

    def reason(self, args: ConvArgs, direction: str = "forward") -> str | None:
        """Why ``direction`` cannot be computed for ``args``, or None (no data touched)."""
        if direction not in DIRECTIONS:
            raise ValueError(
                f"direction: expected one of {', '.join(DIRECTIONS)}, got {direction!r}"
            )
        reason = self.check(args)
        if reason is not None:
            return reason
        for name in passes_of(direction):
            if name != "forward":
                reason = self.check_pass(args, name)
                if reason is not None:
                    return reason
        return None

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
        *,
        direction: str = "forward",
    ) -> str | None:
        """None if ``direction`` (default: the forward `conv`) can be computed with these
        arguments, else the reason it won't.

        Invalid arguments (ones `F.conv` rejects) raise `convbench.ProblemError`.
        """
        args = ConvArgs.from_call(input, weight, bias, stride, padding, dilation, groups)
        return self.reason(args, direction)

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
        direction: str = "forward",
    ) -> Plan:
        """Do the per-weight work of ``direction``'s passes for inputs shaped like ``input``
        (the other passes prepare themselves on first use)."""
        args = ConvArgs.from_call(input, weight, bias, stride, padding, dilation, groups)
        if args.device.type == "meta":
            raise ValueError("prepare: pass a tensor on the target device (meta is for supports)")
        reason = self.reason(args, direction)
        if reason is not None:
            raise Unsupported(reason)
        made = self.plan(args, weight, bias)
        if not isinstance(made, Passes):
            raise TypeError(f"backend {self.name!r}: plan() must return a Passes, got {made!r:.60}")
        made.intent = direction
        plan = Plan(self.name, args, made, weight, bias)
        for name in passes_of(direction):
            plan.prepare_pass(name)
        return plan

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
        """Same result as `F.conv1d`/`F.conv2d` (by the weight's rank), or `Unsupported`.
        Differentiable: ``backward()`` runs this backend's own gradient passes."""
        tracked = [t for t in (input, weight, bias) if t is not None and t.requires_grad]
        direction = "train" if (tracked and torch.is_grad_enabled()) else "forward"
        plan = self.prepare(
            weight, bias, stride, padding, dilation, groups, input=input, direction=direction
        )
        return plan(input)

    __call__ = conv

    def __repr__(self) -> str:
        return f"<convbench backend {self.name!r}>"


__all__ = ["PASS_NAMES", "Backend", "Passes", "Plan"]
