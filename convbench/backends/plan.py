"""A prepared backend: the passes of one convolution for one weight and one input shape.

A backend's `plan` returns a `Passes` object. Its methods take batched tensors:

* ``forward(x) -> y`` — the output;
* ``forward_train(x) -> (y, saved)`` — the output, and what the backward pass may reuse
  (spectra, transformed tiles; None when nothing is worth keeping);
* ``backward_data(dy) -> dx`` — dL/dx for the upstream gradient ``dy``;
* ``backward_weight(x, dy) -> (dw, db)`` — dL/dw and dL/db (None without a bias);
* ``backward(x, dy, saved, need_data, need_weight) -> (dx, dw, db)`` — both, sharing work
  where the algorithm can (and reusing ``saved``).

Per-weight work that a pass needs (a transformed filter) is done once, in
``prepare_pass(direction)``; `Plan` calls it on first use of a pass, or eagerly when
`Backend.prepare` is asked for that pass, so that it can be timed apart.

A `Passes` that implements only ``forward`` gets its data gradient by autograd through its
forward's tensor ops; every built-in from-scratch backend computes each pass with its own
algorithm.
`Plan` wraps it all for one call site: batched or unbatched tensors, shape checks, and an
autograd-aware ``__call__``.
"""

from __future__ import annotations

import torch

from convbench.problem.spec import ConvArgs


class Passes:
    """One backend's passes for one prepared weight; subclasses implement at least `forward`.

    ``weight`` and ``bias`` are the (detached) tensors the plan was prepared for. The
    defaults of the backward passes differentiate `forward` with autograd.
    """

    #: How the backward passes are computed (shown by `convbench backends` and the README).
    backward_method = "autograd through the forward's tensor ops"
    #: True for backends whose forward is differentiable torch ops (the vendor paths):
    #: then `Plan.__call__` runs ``autograd_forward(x, weight, bias)`` with the caller's own
    #: weight and torch's autograd differentiates it (double backward works).
    native_autograd = False

    def __init__(self, args: ConvArgs, weight: torch.Tensor, bias: torch.Tensor | None):
        self.args = args
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.prepared: dict = {}
        #: The direction the plan was prepared for (`Backend.prepare`): a backend may tile
        #: differently when its per-weight work repeats every step, as in ``train``.
        self.intent = "forward"

    def prepare_pass(self, direction: str) -> None:
        """Do the per-weight work ``direction`` needs (default: none beyond `plan`'s)."""

    def refresh(self, prepared: set[str]) -> None:
        """Redo the per-weight work of the ``prepared`` passes for the new ``weight``/``bias``
        (already set), reusing buffers where the backend can. Default: prepare again."""
        for direction in prepared:
            self.prepare_pass(direction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, object]:
        return self.forward(x), None

    def backward_data(self, dy: torch.Tensor) -> torch.Tensor:
        x = torch.zeros(self.args.input_shape, dtype=dy.dtype, device=dy.device)
        with torch.enable_grad():
            x.requires_grad_(True)
            return torch.autograd.grad(self.forward(x), x, dy)[0]

    def backward_weight(
        self, x: torch.Tensor, dy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def backward(
        self,
        x: torch.Tensor,
        dy: torch.Tensor,
        saved: object = None,
        need_data: bool = True,
        need_weight: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        dx = self.backward_data(dy) if need_data else None
        dw, db = self.backward_weight(x, dy) if need_weight else (None, None)
        return dx, dw, db


def options_of(prepared: dict) -> dict:
    """The JSON-able summary of what a plan chose (tile sizes, frames, blocking, the kernel
    family dispatched to), for result rows and tuning decisions; tensors are left out."""

    def plain(value):
        if isinstance(value, bool | int | float | str) or value is None:
            return value
        if isinstance(value, list | tuple):
            items = [plain(v) for v in value]
            return None if any(v is _SKIP for v in items) else items
        if hasattr(value, "fft") and hasattr(value, "nblocks"):  # an FFT frame plan
            return {"fft": value.fft, "block": value.block, "nblocks": value.nblocks}
        return _SKIP

    out = {}
    for key, value in prepared.items():
        v = plain(value)
        if v is not _SKIP and v is not None:
            out[key] = v
    return out


_SKIP = object()


def _count_bytes(saved: object) -> int:
    if isinstance(saved, torch.Tensor):
        return saved.numel() * saved.element_size()
    if isinstance(saved, dict):
        return sum(_count_bytes(v) for v in saved.values())
    if isinstance(saved, list | tuple):
        return sum(_count_bytes(v) for v in saved)
    return 0


class Plan:
    """A backend prepared for one weight and one input shape.

    ``plan(x)`` is the forward pass, differentiable: with autograd recording, a from-scratch
    backend's own backward passes run in ``loss.backward()``. ``forward``,
    ``forward_train``, ``backward_data``, ``backward_weight`` and ``backward`` are the passes
    themselves (batched or, if the plan was made for one, unbatched tensors). ``prepared``
    holds the per-weight work (e.g. the transformed filter), for inspection and memory
    accounting.
    """

    def __init__(
        self,
        backend: str,
        args: ConvArgs,
        passes: Passes,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
    ):
        self.backend, self.args, self.passes = backend, args, passes
        self.weight, self.bias = weight, bias  # as given: autograd routes gradients to them
        self._ready: set[str] = set()

    @property
    def prepared(self) -> dict:
        return self.passes.prepared

    def prepare_pass(self, direction: str) -> Plan:
        """Do the per-weight work of ``direction`` now (it is otherwise done on first use)."""
        if direction not in self._ready:
            with torch.no_grad():
                self.passes.prepare_pass(direction)
            self._ready.add(direction)
        return self

    def refresh(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Plan:
        """Re-prepare for a new weight (and bias) of the same shape, in place: what a
        training loop does after each optimizer step. Buffers of the per-weight work (a
        transformed filter, a filter spectrum) are rewritten rather than reallocated."""
        if tuple(weight.shape) != self.args.weight_shape:
            raise ValueError(
                f"{self.backend}: refresh needs a weight of shape {self.args.weight_shape}, "
                f"got {tuple(weight.shape)}"
            )
        if (bias is None) != (self.bias is None):
            raise ValueError(f"{self.backend}: refresh must keep the plan's bias (or its absence)")
        self.weight, self.bias = weight, bias
        self.passes.weight = weight.detach()
        self.passes.bias = None if bias is None else bias.detach()
        with torch.no_grad():
            self.passes.refresh(set(self._ready))
        return self

    # -- shapes ----------------------------------------------------------------------------
    def _batched(self, t: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
        got = tuple(t.shape) if self.args.unbatched else tuple(t.shape[1:])
        if got != shape[1:] or (not self.args.unbatched and t.dim() != len(shape)):
            raise ValueError(
                f"{self.backend}: plan was prepared for {what} shape {shape}, got {tuple(t.shape)}"
            )
        return t.unsqueeze(0) if self.args.unbatched else t

    def _unbatched(self, t: torch.Tensor | None) -> torch.Tensor | None:
        return t.squeeze(0) if (t is not None and self.args.unbatched) else t

    def _x(self, x):
        return self._batched(x, self.args.input_shape, "input")

    def _dy(self, dy):
        return self._batched(dy, self.args.output_shape, "output gradient")

    # -- the passes --------------------------------------------------------------------------
    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        tracked = [t for t in (input, self.weight, self.bias) if t is not None]
        if (
            torch.is_grad_enabled()
            and any(t.requires_grad for t in tracked)
            and not self.passes.native_autograd
        ):
            from convbench.backends.autograd import BackendConv

            self.prepare_pass("forward")
            return BackendConv.apply(input, self.weight, self.bias, self)
        if self.passes.native_autograd:  # torch differentiates it, with the given weight
            y = self.passes.autograd_forward(self._x(input), self.weight, self.bias)
            return self._unbatched(y)
        return self.forward(input)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.prepare_pass("forward")
        return self._unbatched(self.passes.forward(self._x(input)))

    def forward_train(self, input: torch.Tensor) -> tuple[torch.Tensor, object]:
        """The output and what the backward pass may reuse (see `saved_bytes`)."""
        self.prepare_pass("forward")
        y, saved = self.passes.forward_train(self._x(input))
        return self._unbatched(y), saved

    def backward_data(self, grad_output: torch.Tensor) -> torch.Tensor:
        self.prepare_pass("backward_data")
        return self._unbatched(self.passes.backward_data(self._dy(grad_output)))

    def backward_weight(self, input: torch.Tensor, grad_output: torch.Tensor):
        """``(grad_weight, grad_bias)``; grad_bias is None without a bias."""
        self.prepare_pass("backward_weight")
        return self.passes.backward_weight(self._x(input), self._dy(grad_output))

    def backward(
        self,
        input: torch.Tensor,
        grad_output: torch.Tensor,
        saved: object = None,
        need_data: bool = True,
        need_weight: bool = True,
    ):
        """``(grad_input, grad_weight, grad_bias)``, sharing work between the two gradients
        and reusing ``saved`` (from `forward_train`) where the backend can."""
        if need_data:
            self.prepare_pass("backward_data")
        if need_weight:
            self.prepare_pass("backward_weight")
        dx, dw, db = self.passes.backward(
            self._x(input), self._dy(grad_output), saved, need_data, need_weight
        )
        return self._unbatched(dx), dw, db

    @staticmethod
    def saved_bytes(saved: object) -> int:
        """Bytes of the tensors `forward_train` kept for the backward pass."""
        return _count_bytes(saved)
