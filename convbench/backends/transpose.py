"""The data gradient as forward convolutions: how `fft` and `winograd` compute dL/dx with
their own forward algorithm.

Per spatial dim, the forward is ``y[o] = Σ_t xpad[o·s + t·d] w[t]`` (stride s, dilation d,
padding lo/hi). Its adjoint, ``dxpad[i] = Σ_{o·s + t·d = i} dy[o] w[t]``, splits by the phase
``r = i mod s`` of the input position: only the taps ``t`` with ``t·d ≡ r (mod s)`` reach
phase r, at ``o = q - e_t`` with ``i = q·s + r`` and ``e_t = (t·d - r)/s``. Those taps are
evenly spaced (``e`` steps by ``d' = d / gcd(s, d)``), so each phase is a **stride-1
correlation of dy with the flipped sub-filter**, dilation ``d'``, suitably padded (negative
padding crops dy). Channels are transposed (``K → C`` per group) and the phases interleave
into dx. Stride 1 has one phase whose output is dx itself; a stride-2 2D layer has four
quarter-size phases, so no work is wasted on zeros (the zero-stuffing route would do 4× the
multiplications).

`data_gradient_phases` derives the phases (pure shape arithmetic); `phase_weight` cuts and
flips the filter for one (`phase_taps` is the same taps unflipped, as a view, for a backend
that folds the flip into its own filter transform); `Phase.scatter` places its output in dx.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from convbench.problem.spec import ConvArgs


@dataclass(frozen=True)
class DimPhase:
    """One phase of one dim. The derived correlation reads ``dy[crop_lo : O - crop_hi]``,
    padded by ``pad``, with the taps ``taps`` (original indices, in derived order) at
    dilation ``dilation``; its ``count`` outputs land at ``dx[start :: stride]``."""

    taps: tuple[int, ...]
    dilation: int
    crop_lo: int
    crop_hi: int
    pad: tuple[int, int]
    count: int
    start: int
    stride: int


def dim_phases(size: int, k: int, s: int, d: int, pad: tuple[int, int]) -> list[DimPhase]:
    """The phases of one dim whose positions hold input samples and get some tap."""
    lo, hi = pad
    out = (size + lo + hi - d * (k - 1) - 1) // s + 1
    phases = []
    for r in range(s):
        taps = [t for t in range(k) if (t * d - r) % s == 0]
        q0 = max(0, -((r - lo) // s))  # first q with q·s + r >= lo
        q1 = -((r - lo - size) // s)  # first q with q·s + r >= lo + size
        count = q1 - q0
        if not taps or count <= 0:
            continue
        step = d // math.gcd(s, d) if len(taps) > 1 else 1
        first = (taps[0] * d - r) // s
        reach = first + (len(taps) - 1) * step  # P: how far left the flipped filter reaches
        left = reach - q0
        crop_lo = max(0, -left)
        left = max(0, left)
        span = step * (len(taps) - 1)
        right = count - (out - crop_lo) - left + span
        crop_hi = max(0, -right)
        right = max(0, right)
        if out - crop_lo - crop_hi < 1:
            continue  # every product lands in the padding: these positions get zero
        phases.append(
            DimPhase(
                taps=tuple(reversed(taps)),
                dilation=step,
                crop_lo=crop_lo,
                crop_hi=crop_hi,
                pad=(left, right),
                count=count,
                start=q0 * s + r - lo,
                stride=s,
            )
        )
    return phases


@dataclass(frozen=True)
class Phase:
    """One combination of per-dim phases: a stride-1 forward problem (``args``) whose input
    is the cropped upstream gradient and whose output fills part of dx."""

    dims: tuple[DimPhase, ...]
    args: ConvArgs

    def crop(self, dy: torch.Tensor) -> torch.Tensor:
        """The part of ``dy`` (batched) this phase reads (a view)."""
        for i, dim in enumerate(self.dims):
            length = dy.shape[2 + i] - dim.crop_lo - dim.crop_hi
            dy = dy.narrow(2 + i, dim.crop_lo, length)
        return dy

    def scatter(self, dx: torch.Tensor, out: torch.Tensor) -> None:
        """Write this phase's output into its positions of ``dx``."""
        index = [slice(None), slice(None)]
        for dim in self.dims:
            index.append(slice(dim.start, dim.start + dim.stride * (dim.count - 1) + 1, dim.stride))
        dx[tuple(index)] = out

    @property
    def covers_all(self) -> bool:
        """True when its output is all of dx (stride 1)."""
        return all(dim.stride == 1 and dim.start == 0 for dim in self.dims)


def data_gradient_phases(args: ConvArgs) -> list[Phase]:
    """The stride-1 forward problems whose outputs, interleaved, are dL/dx of ``args``."""
    per_dim = [
        dim_phases(size, k, s, d, pad)
        for size, k, s, d, pad in zip(
            args.spatial, args.kernel, args.stride, args.dilation, args.padding, strict=True
        )
    ]
    phases = []
    for dims in itertools.product(*per_dim):
        lengths = [
            o - dim.crop_lo - dim.crop_hi for o, dim in zip(args.out_spatial, dims, strict=True)
        ]
        derived = ConvArgs(
            nd=args.nd,
            input_shape=(args.batch, args.out_channels, *lengths),
            weight_shape=(args.in_channels, args.out_channels // args.groups)
            + tuple(len(dim.taps) for dim in dims),
            has_bias=False,
            stride=(1,) * args.nd,
            padding=tuple(dim.pad for dim in dims),
            dilation=tuple(dim.dilation for dim in dims),
            groups=args.groups,
            dtype=args.dtype,
            device=args.device,
        )
        phases.append(Phase(tuple(dims), derived))
    return phases


def transposed_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``(K, C/g, *k) -> (C, K/g, *k)``: the filter with input and output channels swapped
    within each group."""
    k_out, c_g = weight.shape[:2]
    w = weight.reshape(groups, k_out // groups, c_g, *weight.shape[2:]).transpose(1, 2)
    return w.reshape(groups * c_g, k_out // groups, *weight.shape[2:])


def phase_weight(transposed: torch.Tensor, phase: Phase) -> torch.Tensor:
    """The flipped sub-filter of one phase, from `transposed_weight`'s output (contiguous)."""
    w = transposed
    for i, dim in enumerate(phase.dims):
        index = torch.tensor(dim.taps, device=w.device)
        w = w.index_select(2 + i, index)
    return w.contiguous()


def phase_taps(transposed: torch.Tensor, phase: Phase) -> torch.Tensor:
    """The taps of one phase in ascending order, as a view of `transposed_weight`'s output
    (no copy): `phase_weight` is this filter reversed along every spatial dim."""
    index = [slice(None), slice(None)]
    for dim in phase.dims:
        first, last = dim.taps[-1], dim.taps[0]  # `taps` is in derived (descending) order
        step = (last - first) // (len(dim.taps) - 1) if len(dim.taps) > 1 else 1
        index.append(slice(first, last + 1, step))
    return transposed[tuple(index)]


def data_gradient(args: ConvArgs, phases: list, dy: torch.Tensor) -> torch.Tensor:
    """dL/dx from the per-phase convolutions of ``dy``: ``phases`` holds (`Phase`, passes)
    pairs whose ``forward`` convolves a phase's crop of dy with its flipped, transposed taps
    (the backend's own algorithm); each result is scattered into its strided slots."""
    if len(phases) == 1 and phases[0][0].covers_all:
        phase, passes = phases[0]
        return passes.forward(phase.crop(dy))
    dx = torch.zeros(args.input_shape, dtype=args.dtype, device=dy.device)
    for phase, passes in phases:
        phase.scatter(dx, passes.forward(phase.crop(dy)))
    return dx
