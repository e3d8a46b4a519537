"""oneDNN: PyTorch's CPU convolution through oneDNN (``torch.backends.mkldnn``).

Refuses, with PyTorch's own reason, every configuration PyTorch would send elsewhere (float64
goes to its "slow" reference kernels: oneDNN has no double kernels), so a row labelled
``onednn`` always measured oneDNN.
"""

from __future__ import annotations

import torch

from convbench.backends import Backend, register
from convbench.backends.dispatch import TorchPasses, selected_path
from convbench.problem.axes import dtype_name
from convbench.problem.spec import ConvArgs


@register
class OneDNNBackend(Backend):
    name = "onednn"
    description = "PyTorch CPU convolution through oneDNN (torch.backends.mkldnn)"
    backward_method = TorchPasses.backward_method

    def check(self, args: ConvArgs) -> str | None:
        if args.device.type != "cpu":
            return f"onednn: CPU only, got device {args.device}"
        if not torch.backends.mkldnn.is_available():
            return "onednn: this PyTorch build has no oneDNN (torch.backends.mkldnn)"
        path = selected_path(args, mkldnn=True)
        if path not in ("Mkldnn", "MkldnnEmpty"):
            return (
                f"onednn: PyTorch would not use oneDNN for this configuration "
                f"(dtype {dtype_name(args.dtype)}); it dispatches to {path}"
            )
        return None

    def plan(self, args, weight, bias):
        passes = TorchPasses(args, weight, bias, {"mkldnn": True})
        passes.prepared = {"dispatch": selected_path(args, mkldnn=True)}
        return passes
