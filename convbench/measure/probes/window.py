"""One sampler for a timed window on any device, and the result-row fields it fills.

The runner wraps its timed loop in ``telemetry_sampler(device)``: NVML telemetry on a CUDA
device, process CPU utilisation on the CPU. ``result_fields()`` then gives every telemetry
column of a result row (`TELEMETRY_FIELDS`), None where the device has no such measurement.
"""

from __future__ import annotations

from typing import Any

import torch

from convbench.measure.probes.cpu import CpuSampler, CpuUsage
from convbench.measure.probes.nvml import NvmlSampler, Telemetry

TELEMETRY_FIELDS = (
    "gpu_util_pct",
    "mem_util_pct",
    "power_w",
    "sm_clock_mhz",
    "temp_c",
    "throttle_reasons",
    "energy_j",
    "telemetry_note",
    "cpu_util_pct",
    "threads",
    "torch_threads",
)


def result_fields(
    telemetry: Telemetry | None = None, usage: CpuUsage | None = None, note: str | None = None
) -> dict[str, Any]:
    """The result-row telemetry columns from whichever measurements were taken (pure).

    ``throttle_reasons`` becomes comma-separated text: ``''`` means none were seen, None that
    they could not be read. ``telemetry_note`` joins the notes of both samplers.
    """
    row: dict[str, Any] = dict.fromkeys(TELEMETRY_FIELDS)
    notes = [note] if note else []
    if telemetry is not None:
        for name in ("gpu_util_pct", "mem_util_pct", "power_w", "sm_clock_mhz", "temp_c"):
            row[name] = getattr(telemetry, name)
        row["energy_j"] = telemetry.energy_j
        if telemetry.throttle_reasons is not None:
            row["throttle_reasons"] = ",".join(telemetry.throttle_reasons)
        notes += [telemetry.note] if telemetry.note else []
    if usage is not None:
        row["cpu_util_pct"] = usage.cpu_util_pct
        row["threads"] = usage.threads
        row["torch_threads"] = usage.torch_threads
        notes += [usage.note] if usage.note else []
    if row["torch_threads"] is None:
        row["torch_threads"] = torch.get_num_threads()
    row["telemetry_note"] = "; ".join(notes) or None
    return row


class WindowSampler:
    """Context manager: `NvmlSampler` on CUDA, `CpuSampler` on CPU, nothing elsewhere."""

    def __init__(
        self,
        device: str | torch.device,
        interval_s: float = 0.01,
        *,
        nvml: Any | None = None,
        cpu_interval_s: float | None = 0.1,
    ):
        self.device = torch.device(device)
        self.nvml_sampler: NvmlSampler | None = None
        self.cpu_sampler: CpuSampler | None = None
        self.note: str | None = None
        if self.device.type == "cuda":
            self.nvml_sampler = NvmlSampler(self.device, interval_s, nvml=nvml)
        elif self.device.type == "cpu":
            self.cpu_sampler = CpuSampler(cpu_interval_s)
        else:
            self.note = f"no telemetry for a {self.device.type} device"

    def __enter__(self) -> WindowSampler:
        for sampler in (self.nvml_sampler, self.cpu_sampler):
            if sampler is not None:
                sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sampler in (self.nvml_sampler, self.cpu_sampler):
            if sampler is not None:
                sampler.stop()

    def result_fields(self) -> dict[str, Any]:
        telemetry = self.nvml_sampler.stop() if self.nvml_sampler else None
        usage = self.cpu_sampler.stop() if self.cpu_sampler else None
        return result_fields(telemetry, usage, self.note)


def telemetry_sampler(
    device: str | torch.device, interval_s: float = 0.01, *, nvml: Any | None = None
) -> WindowSampler:
    """The sampler for a timed window on ``device`` (see `WindowSampler`)."""
    return WindowSampler(device, interval_s, nvml=nvml)
