"""Why `convbench tune` chooses a memory format for the whole model, never per layer.

For each distinct convolution of a suite (default: resnet50, all 53 ResNet-50 convolutions at
batch 8), times PyTorch's own convolution three ways, interleaved per case with
`convbench.measure.engine.measure_interleaved` (the engine `convbench run` uses):

* ``nchw``: input and weight contiguous (PyTorch's default layout);
* ``nhwc``: input and weight already ``channels_last`` — what every layer sees when the whole
  model is kept in that layout;
* ``nhwc+conv``: the NCHW input converted to ``channels_last`` before the layer and the
  output back after — what one layer alone in that layout costs.

and prints each case and the totals over the model (each case times the layers that run it).

    python benchmarks/layout_per_layer.py [SUITE] [--threads N] [--max-time S]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from bench_args import suite_args  # benchmarks/bench_args.py, beside this script

from convbench.measure.engine import measure_interleaved
from convbench.problem import load_suite

CL = torch.channels_last


def main() -> None:
    args, config = suite_args(__doc__)
    totals = [0.0, 0.0, 0.0]
    print(f"{'case':34s} {'nchw ms':>9s} {'nhwc ms':>9s} {'nhwc+conv ms':>13s} {'layers':>6s}")
    with torch.no_grad():
        for case in load_suite(args.suite).cases:
            p = case.problem
            if len(p.kernel) != 2:
                continue
            x, w, b = p.make_tensors(torch.float32)
            kw = p.conv_kwargs()
            xc, wc = x.contiguous(memory_format=CL), w.contiguous(memory_format=CL)
            fns = [
                lambda x=x, w=w, b=b, kw=kw: F.conv2d(x, w, b, **kw),
                lambda xc=xc, wc=wc, b=b, kw=kw: F.conv2d(xc, wc, b, **kw),
                lambda x=x, wc=wc, b=b, kw=kw: F.conv2d(
                    x.contiguous(memory_format=CL), wc, b, **kw
                ).contiguous(),
            ]
            times = [m.median_ms for m in measure_interleaved(fns, config)]
            layers = case.count
            for i, ms in enumerate(times):
                totals[i] += ms * layers
            print(f"{case.name:34s} {times[0]:9.3f} {times[1]:9.3f} {times[2]:13.3f} {layers:6d}")
    print(
        f"model total: nchw {totals[0]:.0f} ms, nhwc {totals[1]:.0f} ms, "
        f"nhwc+conv {totals[2]:.0f} ms ({torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
