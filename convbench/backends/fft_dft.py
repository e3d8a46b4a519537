"""FFT convolution's small-frame path: where a frame has few points, the transforms of the
filter (and of the weight gradient's lags) are done as explicit DFT matrices in one GEMM
instead of `torch.fft`, and the taps each phase of a strided/dilated layout reads.

Used by `convbench.backends.fft`; the frame layout itself is `convbench.backends.fft_plan`.
"""

from __future__ import annotations

import itertools
import math

import torch

from convbench.backends.fft_plan import (
    FFT_S_PER_FLOP,
    FFT_S_PER_TRANSFORM,
    GEMM_S_PER_FLOP,
    WRITE_S_PER_BYTE,
    DimPlan,
)
from convbench.problem.spec import ConvArgs


def tap_slots(dim: DimPlan) -> tuple[list[int], list[int]]:
    """For every tap of one dim: the index of the phase it reads, and the lag, within a frame,
    at which the input/upstream-gradient cross-correlation holds its weight gradient."""
    phase = [dim.phases.index(r) for r, _ in dim.taps]
    lag = [(q - dim.start) % dim.fft for _, q in dim.taps]
    return phase, lag


def _bins(dims: tuple[DimPlan, ...]) -> list[torch.Tensor]:
    """Each dim's frequency index on `torch.fft.rfftn`'s grid (the last dim halved)."""
    sizes = [d.fft for d in dims[:-1]] + [dims[-1].fft // 2 + 1]
    return [torch.arange(n, dtype=torch.float64) for n in sizes]


def dft_matrix(dims: tuple[DimPlan, ...], positions: list[list[int]], inverse: bool):
    """The DFT on the rfftn grid as a ``(bins, points)`` complex matrix, for signals that are
    nonzero only at ``positions`` (one list per dim; points = their product, dim 0 major).

    Forward: ``X[f] = Σ_p x[p] e^{-2πi f·p/M}``. Inverse (``inverse=True``), read at the
    positions: ``x[p] = Re Σ_f w_f X[f] e^{+2πi f·p/M} / ∏M``, with ``w_f`` = 2 for the
    bins whose mirror image rfft leaves out (1 for 0 and the Nyquist bin)."""
    sign = 1.0 if inverse else -1.0
    matrix = torch.ones(1, 1, dtype=torch.complex128)
    for i, (dim, freq, pos) in enumerate(zip(dims, _bins(dims), positions, strict=True)):
        angle = sign * 2 * math.pi * torch.outer(freq, torch.tensor(pos, dtype=torch.float64))
        e = torch.polar(torch.ones_like(angle), angle / dim.fft)
        if inverse:
            e = e / dim.fft
            if i == len(dims) - 1:
                weight = torch.full((len(freq),), 2.0, dtype=torch.float64)
                weight[0] = 1.0
                if dim.fft % 2 == 0:
                    weight[-1] = 1.0
                e = e * weight[:, None]
        matrix = torch.kron(matrix, e)
    return matrix


def small_dft_pays(dims: tuple[DimPlan, ...], points: int) -> bool:
    """Whether a ``(bins × points)`` DFT as GEMM beats a batch of FFTs of whole frames, per
    signal: few points of small frames (a 3×3 filter, the 3×3 lags of a weight gradient)."""
    size = math.prod(d.fft for d in dims)
    bins = size // dims[-1].fft * (dims[-1].fft // 2 + 1)
    gemm = 8 * bins * points * GEMM_S_PER_FLOP
    fft = 2.5 * size * math.log2(max(size, 2)) * FFT_S_PER_FLOP + FFT_S_PER_TRANSFORM
    return gemm < fft + 4 * size * WRITE_S_PER_BYTE  # the FFT also fills a whole frame


def phase_taps(dims: tuple[DimPlan, ...]) -> list[tuple[int, list[int], list[list[int]]]]:
    """For every combination of phases (index in the channel·phase layout): the kernel taps
    it holds (flattened, dim 0 major) and their slots in the frame, per dim."""
    per_dim = []
    for dim in dims:
        groups: dict[int, list[tuple[int, int]]] = {}
        for t, (r, q) in enumerate(dim.taps):
            groups.setdefault(dim.phases.index(r), []).append((t, (dim.start - q) % dim.fft))
        per_dim.append([groups.get(i, []) for i in range(len(dim.phases))])
    kernel = [len(d.taps) for d in dims]
    result = []
    for index, combo in enumerate(itertools.product(*per_dim)):
        taps = [
            sum(t * math.prod(kernel[i + 1 :]) for i, (t, _) in enumerate(point))
            for point in itertools.product(*combo)
        ]
        slots = [[slot for _, slot in entries] for entries in combo]
        result.append((index, taps, slots))
    return result


def filter_spectrum_dft(
    weight: torch.Tensor, args: ConvArgs, dims: tuple[DimPlan, ...], out: torch.Tensor | None
) -> torch.Tensor:
    """`filter_spectrum`'s GEMM layout ``(g, bins, C/g·phases, K/g)`` computed as DFTs of the
    taps alone: per phase, ``(bins × taps) @ (taps × C/g·K/g)`` complex GEMMs. No frame of
    zeros is built or transformed; for a small kernel that is most of the work."""
    g, k_out = args.groups, args.out_channels
    c_g = weight.shape[1]
    phases = math.prod(len(d.phases) for d in dims)
    size = math.prod(d.fft for d in dims)
    bins = size // dims[-1].fft * (dims[-1].fft // 2 + 1)
    cdtype = torch.complex128 if weight.dtype == torch.float64 else torch.complex64
    if out is None:
        out = torch.empty(g, bins, c_g * phases, k_out // g, dtype=cdtype, device=weight.device)
    view = out.view(g, bins, c_g, phases, k_out // g)
    # (g, taps, C/g, K/g): the right operand of every phase's GEMM
    w = weight.reshape(g, k_out // g, c_g, -1).permute(0, 3, 2, 1).to(cdtype)
    for index, taps, slots in phase_taps(dims):
        if not taps:
            view[:, :, :, index].zero_()
            continue
        e = dft_matrix(dims, slots, inverse=False).to(cdtype).to(weight.device)
        right = w[:, taps].reshape(g, len(taps), -1)
        if phases == 1:
            torch.matmul(e, right, out=out.view(g, bins, -1))
        else:
            view[:, :, :, index] = torch.matmul(e, right).view(g, bins, c_g, k_out // g)
    return out
