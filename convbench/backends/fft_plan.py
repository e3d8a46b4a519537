"""FFT convolution's layout: which frames, FFT sizes and phases each spatial dim uses, the
cost model that chooses them, and the tensors moved between signal and frames.

See `convbench.backends.fft` for the algorithm these serve; everything here is shape
arithmetic or data movement (no products of spectra).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convbench.problem.spec import ConvArgs

# Cost-model rates (seconds per unit), measured roughly on the 2-core AVX-512 development
# machine in float32. Only their ratios matter for the choice of mode and FFT size.
FFT_S_PER_FLOP = 1 / 8e9  # real FFT, 2.5·M·log2(M) flops per transform
GEMM_S_PER_FLOP = 1 / 50e9  # complex GEMM, 8 flops per complex multiply-add
READ_S_PER_BYTE = 1 / 10e9  # streaming the (resident) filter spectrum through the GEMM
# Writing fresh temporaries: large allocations come straight from mmap, so every page is
# faulted in on first touch, which costs more than the write itself.
WRITE_S_PER_BYTE = 1 / 2.5e9
GEMM_S_PER_MATRIX = 2e-6  # fixed cost of each small matrix product in the batch
# Fixed cost of each transform in a batch of small FFTs: for frames of a few dozen samples it
# outweighs the arithmetic, and a DFT as one GEMM over all of them is cheaper.
FFT_S_PER_TRANSFORM = 3e-7
ELEMENTWISE_MAX_CHANNELS = 4  # input channels per group (× phases) for the elementwise path
# Filter spectra beyond this push the choice towards smaller (blocked) FFTs: a whole-signal
# spectrum of a wide conv1d (256×256 channels, 16k samples) would take 4.4 GB.
FILTER_BUDGET_BYTES = 512 * 2**20
MAX_BLOCK_CANDIDATES = 40  # per dim, to keep the 2D search over (M1, M2) small


@functools.cache
def fast_sizes(limit: int) -> tuple[int, ...]:
    """All 2·3·5·7-smooth numbers ``<= limit``, ascending: sizes pocketfft/MKL do fastest."""
    if limit < 1:
        return ()
    sizes = [1]
    for p in (2, 3, 5, 7):
        sizes = [v * p**e for v in sizes for e in range(int(math.log(limit, p)) + 2)]
        sizes = [v for v in sizes if v <= limit]
    return tuple(sorted(set(sizes)))


def next_fast_size(n: int) -> int:
    """The smallest fast size ``>= n``."""
    limit = 2
    while limit < n:
        limit *= 2
    return next(v for v in fast_sizes(limit) if v >= n)


@dataclass(frozen=True)
class DimPlan:
    """How one spatial dim is computed.

    Input phase ``r`` is the signal ``x[m*s + r]``; ``phases`` are the ones some tap reads,
    and only their first ``used`` samples are read. Tap ``t`` reads phase ``taps[t][0]`` at
    shift ``taps[t][1]``: output ``o`` takes ``phase[o + shift]``. ``nblocks`` frames of
    ``fft`` samples start at phase-signal index ``start + f*block``; frame ``f`` yields
    outputs ``f*block .. f*block + block - 1`` in its first ``block`` samples.
    """

    phases: tuple[int, ...]
    taps: tuple[tuple[int, int], ...]
    used: int
    out: int
    fft: int
    block: int
    nblocks: int
    start: int

    def filter_index(self) -> torch.Tensor:
        """``(phases, fft)`` indices into the filter's taps (``len(taps)`` = a zero slot):
        the reversed, shifted filter ``h[(start - q) mod M] = w[t]`` of every phase."""
        index = torch.full((len(self.phases), self.fft), len(self.taps), dtype=torch.long)
        for t, (r, q) in enumerate(self.taps):
            index[self.phases.index(r), (self.start - q) % self.fft] = t
        return index


def dim_options(size: int, k: int, s: int, d: int, pad: tuple[int, int]) -> list[DimPlan]:
    """The whole-signal plan of one dim followed by overlap-save plans at fast sizes."""
    lo, hi = pad
    out = (size + lo + hi - d * (k - 1) - 1) // s + 1
    taps = tuple(((t * d - lo) % s, (t * d - lo) // s) for t in range(k))
    phases = tuple(sorted({r for r, _ in taps}))
    qmin, qmax = min(q for _, q in taps), max(q for _, q in taps)
    span = qmax - qmin + 1
    # Samples past the last one any kept output reads are cropped.
    used = max(min(-(-size // s), out + qmax), 0)
    # Whole signal: one frame holding samples [0, used), output o at index o. Output o reads
    # o + q for q in [qmin, qmax] (qmin <= 0: tap 0 reads at -lo); reads past the end must not
    # wrap, and reads before the start (the left padding) wrap to the end, which must then
    # be past the data. And at least `span`, so that no two taps share a slot in the buffer.
    need = max(out, out + qmax, used - qmin, span)
    whole_fft = next_fast_size(need)
    common = dict(phases=phases, taps=taps, used=used, out=out)
    options = [DimPlan(**common, fft=whole_fft, block=out, nblocks=1, start=0)]
    last = 0
    blocked = []
    for m in fast_sizes(whole_fft):
        block = m - span + 1
        if block < max(1, span // 4) or m >= whole_fft or m < 1.1 * last:
            continue
        nblocks = -(-out // block)
        if nblocks > 1:
            blocked.append(DimPlan(**common, fft=m, block=block, nblocks=nblocks, start=qmin))
            last = m
    return options + blocked[:MAX_BLOCK_CANDIDATES]


def uses_elementwise(c_g: int) -> bool:
    """Whether to multiply spectra elementwise, one input channel at a time, instead of the
    GEMM (whose layout copies and tiny per-bin matrices do not pay off for few channels)."""
    return c_g <= ELEMENTWISE_MAX_CHANNELS


@dataclass(frozen=True)
class Sizes:
    """Element counts of a plan: channels after the phase split, frames, spectra."""

    c_in: int  # input channels × kept phases
    c_g: int  # ... per group
    k_g: int  # output channels per group
    frames: int  # images × frames per image
    size: int  # samples per frame (product of FFT sizes)
    bins: int  # complex bins per frame (the last dim is halved by rfft)

    @classmethod
    def of(cls, args: ConvArgs, dims: tuple[DimPlan, ...]) -> Sizes:
        c_in = args.in_channels * math.prod(len(d.phases) for d in dims)
        size = math.prod(d.fft for d in dims)
        return cls(
            c_in=c_in,
            c_g=c_in // args.groups,
            k_g=args.out_channels // args.groups,
            frames=args.batch * math.prod(d.nblocks for d in dims),
            size=size,
            bins=size // dims[-1].fft * (dims[-1].fft // 2 + 1),
        )

    @property
    def filter_elements(self) -> int:
        return self.c_in * self.k_g * self.bins


def estimate_seconds(args: ConvArgs, dims: tuple[DimPlan, ...]) -> float:
    """Rough float32 run time of a plan: FFT flops, contraction flops or filter-spectrum
    reads (whichever bounds the GEMM), and the bytes of temporaries `run` writes."""
    z = Sizes.of(args, dims)
    k_out = args.out_channels
    fft_flops = z.frames * (z.c_in + k_out) * 2.5 * z.size * math.log2(max(z.size, 2))
    seconds = fft_flops * FFT_S_PER_FLOP
    # Written: padded signal, frames (blocked), frame outputs, output (real); input and
    # output spectra, each twice: FFT output and layout copy (complex).
    padded = args.batch * z.c_in * math.prod((d.nblocks - 1) * d.block + d.fft for d in dims)
    blocked = any(d.nblocks > 1 for d in dims)
    out = args.batch * k_out * math.prod(d.out for d in dims)
    real = padded + blocked * z.frames * z.c_in * z.size + z.frames * k_out * z.size + out
    spectra = z.frames * (z.c_in + k_out) * z.bins
    if uses_elementwise(z.c_g):
        # One multiply(-add) per input channel, each writing an output-spectrum temporary.
        written = 4 * real + 8 * (spectra + z.c_g * z.frames * k_out * z.bins)
    else:
        written = 4 * real + 8 * 2 * spectra
        gemm_flops = 8 * z.frames * z.filter_elements
        seconds += max(gemm_flops * GEMM_S_PER_FLOP, 8 * z.filter_elements * READ_S_PER_BYTE)
        seconds += args.groups * z.bins * GEMM_S_PER_MATRIX
    return seconds + written * WRITE_S_PER_BYTE


def filter_seconds(args: ConvArgs, dims: tuple[DimPlan, ...]) -> float:
    """Rough run time of the per-weight work: the reversed filter laid into frames, its
    ``rfftn``, and the spectrum's layout copy."""
    z = Sizes.of(args, dims)
    signals = z.c_in * z.k_g
    fft_flops = signals * 2.5 * z.size * math.log2(max(z.size, 2))
    written = 4 * signals * z.size + 8 * 2 * z.filter_elements
    return fft_flops * FFT_S_PER_FLOP + written * WRITE_S_PER_BYTE


def weight_gradient_seconds(args: ConvArgs, dims: tuple[DimPlan, ...]) -> float:
    """Rough run time of the weight gradient with these frames: the input's and dy's frames
    and spectra (and their layout copies), the per-bin GEMM summing images and frames, the
    cross-spectrum it writes, and the inverse FFTs of every channel pair."""
    z = Sizes.of(args, dims)
    k_out = args.out_channels
    signals = z.frames * (z.c_in + k_out)
    seconds = signals * 2.5 * z.size * math.log2(max(z.size, 2)) * FFT_S_PER_FLOP
    pairs = k_out * z.c_g  # cross-spectra, each with `bins` bins
    gemm_flops = 8 * pairs * z.frames * z.bins
    seconds += gemm_flops * GEMM_S_PER_FLOP + args.groups * z.bins * GEMM_S_PER_MATRIX
    seconds += pairs * 2.5 * z.size * math.log2(max(z.size, 2)) * FFT_S_PER_FLOP
    # frames (real), spectra (FFT output and layout copy), cross-spectra (GEMM output and
    # layout copy), correlations (real)
    written = 4 * signals * z.size + 8 * 2 * signals * z.bins
    written += 8 * 2 * pairs * z.bins + 4 * pairs * z.size
    return seconds + written * WRITE_S_PER_BYTE


def _per_dim_options(args: ConvArgs) -> list[list[DimPlan]]:
    return [
        dim_options(size, k, s, d, pad)
        for size, k, s, d, pad in zip(
            args.spatial, args.kernel, args.stride, args.dilation, args.padding, strict=True
        )
    ]


def choose_plan(args: ConvArgs, with_filter: bool = False) -> tuple[DimPlan, ...]:
    """Per-dim mode and FFT size with the lowest `estimate_seconds` (plus `filter_seconds`
    when the filter changes every call, as in training) among plans whose filter spectrum
    fits `FILTER_BUDGET_BYTES` (failing that, the plan that overshoots least)."""

    def key(dims: tuple[DimPlan, ...]) -> tuple[float, float]:
        over = 8 * Sizes.of(args, dims).filter_elements - FILTER_BUDGET_BYTES  # complex64
        seconds = estimate_seconds(args, dims)
        if with_filter:
            seconds += filter_seconds(args, dims)
        return max(over, 0), seconds

    return min(itertools.product(*_per_dim_options(args)), key=key)


def choose_weight_plan(args: ConvArgs) -> tuple[DimPlan, ...]:
    """The frames for the weight gradient: lowest `weight_gradient_seconds` among plans
    whose cross-spectra fit `FILTER_BUDGET_BYTES`. Its output is one spectrum per channel
    pair, so it favours short frames, where the forward favours few of them."""

    def key(dims: tuple[DimPlan, ...]) -> tuple[float, float]:
        over = 8 * Sizes.of(args, dims).filter_elements - FILTER_BUDGET_BYTES
        return max(over, 0), weight_gradient_seconds(args, dims)

    return min(itertools.product(*_per_dim_options(args)), key=key)


def filter_spectrum(
    weight: torch.Tensor,
    args: ConvArgs,
    dims: tuple[DimPlan, ...],
    elementwise: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The spectrum of the reversed, shifted, phase-split filter (into ``out``, when a plan
    is re-prepared in place).

    Laid out ``(g, bins, C/g·phases, K/g)`` for the GEMM, or ``(g, C/g·phases, K/g, 1…, *F)``
    (singleton frame dims) for the elementwise path.
    """
    nd, g = args.nd, args.groups
    k_out = args.out_channels
    # One zero tap appended per dim: the index tables point empty FFT slots at it.
    w = F.pad(weight, [0, 1] * nd)
    index = [dim.filter_index().to(weight.device) for dim in dims]
    if nd == 1:
        h = w[:, :, index[0]]  # (K, C/g, R, M)
    else:
        i1, i2 = index
        h = w[:, :, i1[:, None, :, None], i2[None, :, None, :]]  # (K, C/g, R1, R2, M1, M2)
    spec = torch.fft.rfftn(h, dim=tuple(range(-nd, 0)))
    freq = spec.shape[-nd:]
    spec = spec.reshape(g, k_out // g, -1, *freq)  # (g, K/g, C/g·phases, *F)
    if elementwise:
        spec = spec.transpose(1, 2)  # (g, C/g·phases, K/g, *F)
        spec = spec.reshape(*spec.shape[:3], *([1] * nd), *freq)
    else:
        spec = spec.flatten(3).permute(0, 3, 2, 1)
    return spec.contiguous() if out is None else out.copy_(spec)


def frames(x: torch.Tensor, args: ConvArgs, dims: tuple[DimPlan, ...]) -> torch.Tensor:
    """``(N, C·phases, *nblocks, *fft)`` frames of the phase-split input: overlapping views
    (``unfold``) of one cropped and zero-padded copy."""
    n, nd = x.shape[0], args.nd
    if any(s > 1 for s in args.stride):
        # Polyphase split: bring each dim to `used * stride` samples (crop or zero-pad), read
        # it as (used, stride) and move the kept phases next to the channels.
        pads = []
        for i, (dim, size, s) in enumerate(zip(dims, args.spatial, args.stride, strict=True)):
            x = x.narrow(2 + i, 0, min(size, dim.used * s))
            pads = [0, max(dim.used * s - size, 0)] + pads
        if any(pads):
            x = F.pad(x, pads)
        for i, (dim, s) in enumerate(zip(dims, args.stride, strict=True)):
            x = x.unflatten(2 + 2 * i, (dim.used, s))
            if len(dim.phases) < s:
                index = torch.tensor(dim.phases, device=x.device)
                x = x.index_select(3 + 2 * i, index)
        x = x.permute(0, 1, *range(3, 3 + 2 * nd, 2), *range(2, 2 + 2 * nd, 2))
    # Keep samples [start, start + extent) of every dim: crop what is never read, zero-pad
    # what frames read beyond the data (including the whole-signal FFT padding).
    pads = []
    for i, dim in enumerate(dims):
        extent = (dim.nblocks - 1) * dim.block + dim.fft
        first, stop = max(dim.start, 0), max(min(dim.used, dim.start + extent), dim.start)
        x = x.narrow(x.dim() - nd + i, first, stop - first)
        pads = [first - dim.start, extent - (stop - dim.start)] + pads
    if any(pads):
        x = F.pad(x, pads)
    spatial_dim = x.dim() - nd
    for i, dim in enumerate(dims):
        # unfold turns dim i into its frame index and appends the frame's samples last,
        # so (N, C, R…, P1, P2) becomes (N, C, R…, nb1, nb2, M1, M2).
        x = x.unfold(spatial_dim + i, dim.fft, dim.block)
    return x.reshape(n, -1, *x.shape[-2 * nd :])


def assemble(y: torch.Tensor, args: ConvArgs, dims: tuple[DimPlan, ...]) -> torch.Tensor:
    """``(N, K, *nblocks, *fft)`` frame outputs to ``(N, K, *out)``: keep each frame's first
    ``block`` samples, lay the frames end to end, cut at the output size."""
    nd = args.nd
    y = y[(..., *(slice(0, d.block) for d in dims))]
    if all(d.nblocks == 1 for d in dims):
        y = y.reshape(*y.shape[:2], *y.shape[-nd:])
    else:
        interleave = [2 + j for i in range(nd) for j in (i, nd + i)]  # nb1, B1, nb2, B2
        y = y.permute(0, 1, *interleave)
        y = y.reshape(*y.shape[:2], *(d.nblocks * d.block for d in dims))
    return y[(..., *(slice(0, d.out) for d in dims))]


def gradient_frames(dy: torch.Tensor, dims: tuple[DimPlan, ...]) -> torch.Tensor:
    """``(N, K, *nblocks, *fft)``: each frame holds the ``block`` upstream-gradient samples of
    the outputs that frame produced, at its start, zero after — the adjoint of `assemble`."""
    n, k_out, nd = dy.shape[0], dy.shape[1], len(dims)
    pads = []
    for d in dims:
        pads = [0, d.nblocks * d.block - d.out] + pads
    if any(pads):
        dy = F.pad(dy, pads)
    dy = dy.reshape(n, k_out, *(v for d in dims for v in (d.nblocks, d.block)))
    order = [0, 1, *(2 + 2 * i for i in range(nd)), *(3 + 2 * i for i in range(nd))]
    dy = dy.permute(order)
    pads = []
    for d in dims:
        pads = [0, d.fft - d.block] + pads
    return F.pad(dy, pads) if any(pads) else dy.contiguous()
