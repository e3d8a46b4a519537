"""torch_slowed5, torch_slowed10, torch_slowed20: the ``torch`` backend made slower by a fixed
fraction of its own time, to test the regression gate (`convbench calibrate --gate`).

Each forward call runs PyTorch's convolution exactly as ``torch`` does, reads how long it
took, then spins for that time × the fraction. The slowdown is a fraction of *this* call's
own time, so it follows the host's pace: on a host running 30% slower the convolution and
the added work both take 30% longer, and the injected regression stays the asked fraction,
as a real one would. A spin, not a sleep: a sleep's wake-up latency (tens of µs) would
swamp the added time of a small kernel.

These backends are registered for the gate's tests and calibration only: `backend_names`
leaves them out (``listed = False``), so no suite runs them unless it names them. CPU
only, forward only; anything else is refused with the reason.
"""

from __future__ import annotations

import time

from convbench.backends import register
from convbench.backends.dispatch import TorchPasses
from convbench.backends.pytorch import TorchBackend, dispatch_of


class SlowedPasses(TorchPasses):
    """`TorchPasses` whose forward (timed, and as a model calls it) spins for ``fraction`` of
    the time its convolution took."""

    def __init__(self, args, weight, bias, fraction: float):
        super().__init__(args, weight, bias, {})
        self.fraction = fraction

    def autograd_forward(self, x, weight, bias):
        clock = time.perf_counter
        start = clock()
        out = super().autograd_forward(x, weight, bias)
        until = start + (clock() - start) * (1.0 + self.fraction)
        while clock() < until:
            pass
        return out


class SlowedTorch(TorchBackend):
    """Base of the slowed backends; subclasses set ``name`` and ``fraction``."""

    listed = False
    fraction = 0.0

    def check(self, args):
        if args.device.type not in ("cpu", "meta"):
            return f"{self.name}: a test backend for the gate; CPU only"
        return super().check(args)

    def check_pass(self, args, direction):
        if direction != "forward":
            return f"{self.name}: a test backend for the gate; forward only"
        return None

    def plan(self, args, weight, bias):
        passes = SlowedPasses(args, weight, bias, self.fraction)
        passes.prepared = {"dispatch": dispatch_of(args), "slowed_by": self.fraction}
        return passes


def _slowed(percent: int) -> type[SlowedTorch]:
    cls = type(
        f"SlowedTorch{percent}",
        (SlowedTorch,),
        {
            "name": f"torch_slowed{percent}",
            "fraction": percent / 100,
            "description": f"torch slowed by {percent}% of its own time (gate tests only)",
        },
    )
    return register(cls)


#: The slowdowns `convbench calibrate --gate` injects, in percent.
SLOWDOWNS = (5, 10, 20)
SLOWED = {percent: _slowed(percent).name for percent in SLOWDOWNS}
