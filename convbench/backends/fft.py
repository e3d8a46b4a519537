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
over output channels, and accumulated one input channel at a time. (Layout and cost model:
`convbench.backends.fft_plan`.)

The gradients are products of spectra too:

* **data gradient**: a convolution of the upstream gradient with the flipped, channel-
  transposed filter, split by stride phase (`convbench.backends.transpose`), each phase an
  FFT convolution of this backend whose filter spectrum is computed once per weight;
* **weight gradient**: for every (output channel, input channel·phase) pair, the cross-
  correlation of the input with the upstream gradient, ``irfft(Σ conj(DY)·X)``, read at the
  lags of the taps — one batched complex GEMM per frequency bin, summing images and frames,
  then one inverse FFT. The input spectra are those the forward computes; after a training
  forward (`forward_train`) they are kept and reused, so ``backward`` only transforms dy.

float64 and float32 compute natively; float16/bfloat16 are computed in float32 (CPU FFTs have
no half precision and the accuracy would be poor anyway) and the result is rounded back once.
"""

from __future__ import annotations

import math

import torch

from convbench.backends import Backend, Passes, register
from convbench.backends.fft_dft import (
    dft_matrix,
    filter_spectrum_dft,
    phase_taps,
    small_dft_pays,
    tap_slots,
)
from convbench.backends.fft_plan import (
    Sizes,
    assemble,
    choose_plan,
    choose_weight_plan,
    filter_spectrum,
    frames,
    gradient_frames,
    uses_elementwise,
)
from convbench.backends.ops import bias_grad
from convbench.backends.transpose import (
    data_gradient,
    data_gradient_phases,
    phase_weight,
    transposed_weight,
)
from convbench.problem.spec import ConvArgs


class FFTPasses(Passes):
    backward_method = (
        "FFT convolution of dy with the flipped filter (data); input-dy cross-correlation "
        "spectra, one batched complex GEMM (weight)"
    )

    def __init__(self, args, weight, bias):
        super().__init__(args, weight, bias)
        self.compute = torch.float64 if args.dtype == torch.float64 else torch.float32
        self.fft_dims = tuple(range(-args.nd, 0))
        self.cbias = None if self.bias is None else self.bias.to(self.compute)
        self.dims: tuple | None = None  # the forward's frames (see prepare_pass)
        self.wdims: tuple | None = None  # the weight gradient's frames
        self._data_phases: list | None = None

    def refresh(self, prepared):
        """The new weight's filter spectra, written over the old ones."""
        self.cbias = None if self.bias is None else self.bias.to(self.compute)
        if self.dims is not None:
            self._filter_spectrum(self.spectrum)
        if self._data_phases is not None:
            transposed = transposed_weight(self.weight, self.args.groups)
            for phase, passes in self._data_phases:
                passes.weight = phase_weight(transposed, phase)
                passes.refresh({"forward"})

    def _filter_spectrum(self, out):
        """The filter's spectrum: DFTs of the taps as one GEMM per phase when the frames
        are small (a 3×3 kernel), else FFTs of the reversed filter laid into frames."""
        w = self.weight.to(self.compute)
        taps = max(len(t) for _, t, _ in phase_taps(self.dims))
        if not self.elementwise and small_dft_pays(self.dims, taps):
            return filter_spectrum_dft(w, self.args, self.dims, out)
        return filter_spectrum(w, self.args, self.dims, self.elementwise, out)

    def prepare_pass(self, direction):
        args = self.args
        if direction == "forward" and self.dims is None:
            # Training re-prepares every step: then the filter spectrum's cost counts too.
            self.dims = choose_plan(args, with_filter=self.intent == "train")
            z = Sizes.of(args, self.dims)
            self.c_g, self.k_g = z.c_g, z.k_g
            self.nblocks = [d.nblocks for d in self.dims]
            self.elementwise = uses_elementwise(z.c_g)
            self.spectrum = self._filter_spectrum(None)
            self.prepared = {
                "dims": self.dims,
                "spectrum": self.spectrum,
                "elementwise": self.elementwise,
            }
        elif direction == "backward_data" and self._data_phases is None:
            transposed = transposed_weight(self.weight, args.groups)
            self._data_phases = []
            for phase in data_gradient_phases(args):
                passes = FFTPasses(phase.args, phase_weight(transposed, phase), None)
                passes.intent = self.intent
                passes.prepare_pass("forward")
                self._data_phases.append((phase, passes))
        elif direction == "backward_weight" and self.wdims is None:
            self.wdims = choose_weight_plan(args)

    # -- forward -------------------------------------------------------------------------
    def _spectra(self, x: torch.Tensor, dims) -> torch.Tensor:
        """``(N, C·phases, *nblocks, *freq)``: the spectra of the input's frames."""
        return torch.fft.rfftn(frames(x.to(self.compute), self.args, dims), dim=self.fft_dims)

    def _rows(self, spec: torch.Tensor, n: int, channels: int) -> torch.Tensor:
        """The one layout copy of a spectrum for the per-bin GEMMs: ``(g, bins, rows,
        channels)`` with rows = images × frames. Explicit, because a strided view would send
        bmm down a per-matrix copying path."""
        g = self.args.groups
        bins = math.prod(spec.shape[-self.args.nd :])
        rows = spec.view(n, g, channels, -1, bins).permute(1, 4, 0, 3, 2).contiguous()
        return rows.view(g, bins, -1, channels)

    def _output(self, spec: torch.Tensor, rows: torch.Tensor | None, n: int) -> torch.Tensor:
        args, nd, g, nb = self.args, self.args.nd, self.args.groups, self.nblocks
        freq = spec.shape[-nd:]
        if self.elementwise:
            # (N, g, 1, *nb, *F) * (g, K/g, 1…, *F), accumulated over C/g·phases.
            spec = spec.view(n, g, self.c_g, *nb, *freq)
            y = spec[:, :, 0:1] * self.spectrum[:, 0]
            for c in range(1, self.c_g):
                y = torch.addcmul(y, spec[:, :, c : c + 1], self.spectrum[:, c])
        else:
            y = torch.matmul(rows, self.spectrum)
            # (g, *F, N, *nb, K/g) -> (N, g, K/g, *nb, *F)
            y = y.view(g, *freq, n, *nb, self.k_g)
            y = y.permute(nd + 1, 0, 2 * nd + 2, *range(nd + 2, 2 * nd + 2), *range(1, nd + 1))
        y = torch.fft.irfftn(y, s=[d.fft for d in self.dims], dim=self.fft_dims)
        y = y.reshape(n, args.out_channels, *y.shape[3:])
        if self.cbias is not None:
            # In place on the frames: one fresh output-sized tensor fewer than adding the
            # bias after cropping.
            y = y.add_(self.cbias.view(1, -1, *([1] * (y.dim() - 2))))
        return assemble(y, args, self.dims).to(args.dtype).contiguous()

    def _kept(self, spec: torch.Tensor, n: int):
        """What the weight gradient reads of the input's spectra, in its layout."""
        return spec if self.elementwise else self._rows(spec, n, self.c_g)

    def forward(self, x):
        spec = self._spectra(x, self.dims)
        rows = None if self.elementwise else self._rows(spec, x.shape[0], self.c_g)
        return self._output(spec, rows, x.shape[0])

    def forward_train(self, x):
        spec = self._spectra(x, self.dims)
        kept = self._kept(spec, x.shape[0])
        y = self._output(spec, None if self.elementwise else kept, x.shape[0])
        self.prepare_pass("backward_weight")
        # Kept for the weight gradient when it uses the same frames (else it recomputes).
        return y, (kept if self.wdims == self.dims else None)

    # -- data gradient -------------------------------------------------------------------------
    def backward_data(self, dy):
        self.prepare_pass("backward_data")
        return data_gradient(self.args, self._data_phases, dy)

    # -- weight gradient -----------------------------------------------------------------------
    def _input_for_weight(self, x: torch.Tensor, saved) -> torch.Tensor:
        if saved is not None:
            return saved
        spec = self._spectra(x, self.wdims)
        z = Sizes.of(self.args, self.wdims)
        return spec if uses_elementwise(z.c_g) else self._rows(spec, x.shape[0], z.c_g)

    def _weight_grad(self, kept: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        args, nd, g, dims = self.args, self.args.nd, self.args.groups, self.wdims
        z = Sizes.of(args, dims)
        n = dy.shape[0]
        dys = torch.fft.rfftn(gradient_frames(dy.to(self.compute), dims), dim=self.fft_dims)
        freq = dys.shape[-nd:]
        bins = math.prod(freq)
        if uses_elementwise(z.c_g):
            x = kept.view(n, g, 1, z.c_g, -1, bins)
            d = dys.view(n, g, z.k_g, 1, -1, bins).conj()
            cross = (d * x).sum(dim=(0, 4)).view(g, -1, bins).transpose(1, 2)
        else:
            rows = self._rows(dys, n, z.k_g)  # (g, bins, rows, K/g)
            cross = torch.matmul(rows.mH, kept).view(g, bins, -1)
        # cross: (g, bins, K/g·C/g·R), the spectrum of every channel pair's cross-correlation
        c_g = args.in_channels // g
        phases = [len(d.phases) for d in dims]
        slots = [tap_slots(d) for d in dims]
        lags = [sorted(set(lag)) for _, lag in slots]
        if small_dft_pays(dims, math.prod(len(v) for v in lags)):
            # only the taps' lags: one GEMM with the inverse DFT read there
            e = dft_matrix(dims, lags, inverse=True).to(cross.dtype).to(dy.device)
            corr = torch.matmul(e.T, cross).real  # (g, lags, K/g·C/g·R)
            slots = [
                (phase, [lag.index(v) for v in tap])
                for (phase, tap), lag in zip(slots, lags, strict=True)
            ]
            sizes = [len(v) for v in lags]
        else:
            corr = (
                torch.fft.irfftn(
                    cross.transpose(1, 2).reshape(g, -1, *freq),
                    s=[d.fft for d in dims],
                    dim=self.fft_dims,
                )
                .flatten(2)
                .transpose(1, 2)
            )  # (g, frame, K/g·C/g·R)
            sizes = [d.fft for d in dims]
        # (g, *lags, K/g, C/g, *phases) -> (K, C/g, *phases, *lags)
        corr = corr.reshape(g, *sizes, z.k_g, c_g, *phases)
        order = [0, nd + 1, nd + 2, *range(nd + 3, 2 * nd + 3), *range(1, nd + 1)]
        corr = corr.permute(order).reshape(args.out_channels, c_g, *phases, *sizes)
        # the weight, tap by tap
        phase_index, lag_index = [], []
        for i, (phase, lag) in enumerate(slots):
            shape = [1] * nd
            shape[i] = -1
            phase_index.append(torch.tensor(phase, device=dy.device).view(shape))
            lag_index.append(torch.tensor(lag, device=dy.device).view(shape))
        return corr[(slice(None), slice(None), *phase_index, *lag_index)].to(args.dtype)

    def backward_weight(self, x, dy):
        kept = self._input_for_weight(x, None)
        return self._weight_grad(kept, dy), bias_grad(dy, self.bias)

    def backward(self, x, dy, saved=None, need_data=True, need_weight=True):
        dx = self.backward_data(dy) if need_data else None
        dw = db = None
        if need_weight:
            dw = self._weight_grad(self._input_for_weight(x, saved), dy)
            db = bias_grad(dy, self.bias)
        return dx, dw, db


@register
class FFTBackend(Backend):
    name = "fft"
    description = "real FFTs at fast sizes (whole signal or overlap-save), per-bin complex GEMM"
    backward_method = FFTPasses.backward_method

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
        return FFTPasses(args, weight, bias)
