"""FFT convolution: pointwise products of spectra, contracted over channels per frequency bin.

What ``F.conv1d``/``F.conv2d`` compute is a cross-correlation,
``y[o] = sum_t xpad[o*s + t*d] * w[t]``. Per spatial dim this backend rewrites it as
stride-1 correlations that one set of real FFTs computes exactly:

* **Dilation** is the zero-stuffed filter: tap ``t`` sits at offset ``t*d``.
* **Stride** by polyphase decomposition: input phase ``r`` is ``x_r[m] = x[m*s + r]``, and the
  tap at padded offset ``j`` reads phase ``(j - lo) mod s`` at shift ``q = floor((j-lo)/s)``.
  The phases become extra input channels (``C*s`` channels of length ``L/s``), so the channel
  contraction also sums over phases. Compared with computing the stride-1 output and
  subsampling it, the forward FFTs cost the same, the contraction does the same work
  (``s``-fold channels on ``1/s`` of the bins), and the inverse FFTs and the output they make
  shrink ``s``-fold; phases that no tap reads (dilation a multiple of the stride) are dropped,
  which the subsampling route cannot do.
* **Padding** is never materialised: ``lo`` is folded into the shifts ``q`` above, and the
  filter is placed *reversed and circularly shifted* in an FFT-sized buffer (the same as
  multiplying by the conjugate spectrum, with the shift folded in), so a cyclic convolution
  of the zero-extended input yields the correlation with output ``o`` at index ``o``.
  The FFT size only has to cover what the kept outputs read without wrapping onto data —
  about ``L + max(lo, hi)`` in whole-signal mode, not ``L + lo + hi + k - 1``.

Each dim is computed either whole (one frame, FFT size rounded up to a 2·3·5·7-smooth "fast
size") or by overlap-save blocking: frames of a fast size ``M`` that step by
``B = M - span + 1`` outputs, so the FFT size tracks the kernel rather than the signal.
A cost model (`estimate_seconds`: FFT flops, GEMM flops or filter-spectrum reads, bytes of
temporaries) picks the mode and ``M`` per dim, keeping the filter spectrum under
`FILTER_BUDGET_BYTES`: whole-signal spectra are the least FFT and GEMM work, but the filter
spectrum grows with the signal and, with few images, the per-bin GEMMs have few rows and are
bound by reading it; blocking turns frames into GEMM rows.

``plan`` computes the filter spectrum once per weight (its size depends on the input shape),
already laid out as ``(groups, bins, C/g·phases, K/g)``; the per-input work is: phase split,
framing, ``rfftn``, one batched complex ``matmul`` with the frequency bins (and groups) as the
batch dim, ``irfftn``, crop. Depthwise-like problems (≤ 4 input channels per group, phases
included) skip the GEMM and its layout copies: spectra are multiplied elementwise, broadcast
over output channels, and accumulated one input channel at a time. Everything is differentiable
torch ops, so autograd yields input, weight and bias gradients.

float64 and float32 compute natively; float16/bfloat16 are computed in float32 (CPU FFTs have
no half precision and the accuracy would be poor anyway) and the result is rounded back once.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convbench.backends import Backend, register
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


def choose_plan(args: ConvArgs) -> tuple[DimPlan, ...]:
    """Per-dim mode and FFT size with the lowest `estimate_seconds` among plans whose filter
    spectrum fits `FILTER_BUDGET_BYTES` (failing that, the plan that overshoots least)."""
    per_dim = [
        dim_options(size, k, s, d, pad)
        for size, k, s, d, pad in zip(
            args.spatial, args.kernel, args.stride, args.dilation, args.padding, strict=True
        )
    ]

    def key(dims: tuple[DimPlan, ...]) -> tuple[float, float]:
        over = 8 * Sizes.of(args, dims).filter_elements - FILTER_BUDGET_BYTES  # complex64
        return max(over, 0), estimate_seconds(args, dims)

    return min(itertools.product(*per_dim), key=key)


def filter_spectrum(
    weight: torch.Tensor, args: ConvArgs, dims: tuple[DimPlan, ...], elementwise: bool
) -> torch.Tensor:
    """The spectrum of the reversed, shifted, phase-split filter.

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
        return spec.reshape(*spec.shape[:3], *([1] * nd), *freq).contiguous()
    return spec.flatten(3).permute(0, 3, 2, 1).contiguous()


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


@register
class FFTBackend(Backend):
    name = "fft"
    description = "real FFTs at fast sizes (whole signal or overlap-save), per-bin complex GEMM"

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type not in ("cpu", "cuda", "meta"):
            return f"fft: device {args.device.type} not supported"
        if args.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            return f"fft: dtype {args.dtype} not supported (real floating point only)"
        return None

    def workspace_bytes(self, args: ConvArgs) -> int:
        """Filter spectrum plus input and output spectra (each twice: FFT output and GEMM
        layout), in the compute precision; the real frames are smaller and not counted."""
        z = Sizes.of(args, choose_plan(args))
        spectra = 2 * z.frames * (z.c_in + args.out_channels) * z.bins
        return (z.filter_elements + spectra) * (16 if args.dtype == torch.float64 else 8)

    def plan(self, args, weight, bias):
        dims = choose_plan(args)
        nd, g = args.nd, args.groups
        compute = torch.float64 if args.dtype == torch.float64 else torch.float32
        z = Sizes.of(args, dims)
        c_g, k_g = z.c_g, z.k_g
        nblocks = [d.nblocks for d in dims]
        elementwise = uses_elementwise(c_g)
        spectrum = filter_spectrum(weight.to(compute), args, dims, elementwise)
        bias = bias.to(compute) if bias is not None else None
        fft_dims = tuple(range(-nd, 0))

        def run(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            spec = torch.fft.rfftn(frames(x.to(compute), args, dims), dim=fft_dims)
            freq = spec.shape[-nd:]
            if elementwise:
                # (N, g, 1, *nb, *F) * (g, K/g, 1…, *F), accumulated over C/g·phases.
                spec = spec.view(n, g, c_g, *nblocks, *freq)
                y = spec[:, :, 0:1] * spectrum[:, 0]
                for c in range(1, c_g):
                    y = torch.addcmul(y, spec[:, :, c : c + 1], spectrum[:, c])
            else:
                bins, rows = math.prod(freq), n * math.prod(nblocks)
                # The one layout copy of the input spectrum: rows (images × frames) by
                # channels per bin. Explicit, because a strided view would send bmm down a
                # per-matrix copying path.
                a = spec.view(n, g, c_g, -1, bins).permute(1, 4, 0, 3, 2).contiguous()
                y = torch.matmul(a.view(g, bins, rows, c_g), spectrum)
                # (g, *F, N, *nb, K/g) -> (N, g, K/g, *nb, *F)
                y = y.view(g, *freq, n, *nblocks, k_g)
                y = y.permute(nd + 1, 0, 2 * nd + 2, *range(nd + 2, 2 * nd + 2), *range(1, nd + 1))
            y = torch.fft.irfftn(y, s=[d.fft for d in dims], dim=fft_dims)
            y = y.reshape(n, args.out_channels, *y.shape[3:])
            if bias is not None:
                # In place on the frames (irfftn's backward does not need its output): one
                # fresh output-sized tensor fewer than `add_bias` after cropping.
                y = y.add_(bias.view(1, -1, *([1] * (y.dim() - 2))))
            return assemble(y, args, dims).to(args.dtype).contiguous()

        return run, {"dims": dims, "spectrum": spectrum, "elementwise": elementwise}
