"""GPU telemetry as data: one NVML poll (`NvmlSample`), a window's summary (`Telemetry`) and
the pure reduction between them (`summarise`), with NVML's constants and throttle-reason bits.

The sampling thread that produces the polls is `convbench.measure.probes.nvml.NvmlSampler`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NVML_CLOCK_SM = 1  # nvmlClockType_t NVML_CLOCK_SM
NVML_TEMPERATURE_GPU = 0  # nvmlTemperatureSensors_t NVML_TEMPERATURE_GPU

# nvmlClocksEventReason* / nvmlClocksThrottleReason* bits (stable NVML ABI values).
THROTTLE_REASONS: Mapping[int, str] = {
    0x001: "GpuIdle",
    0x002: "ApplicationsClocksSetting",
    0x004: "SwPowerCap",
    0x008: "HwSlowdown",
    0x010: "SyncBoost",
    0x020: "SwThermalSlowdown",
    0x040: "HwThermalSlowdown",
    0x080: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
    0x200: "BoardLimit",
    0x400: "Reliability",
}


def decode_throttle_reasons(mask: int) -> tuple[str, ...]:
    """Names of the bits set in an NVML clocks-event (throttle) reason mask; unknown bits are
    kept as hex so nothing is lost."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(hex(unknown))
    return tuple(names)


@dataclass(frozen=True)
class NvmlSample:
    """One poll of the GPU; None where the query failed or is not supported."""

    t_s: float
    gpu_util_pct: float | None = None
    mem_util_pct: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    temp_c: float | None = None
    throttle_mask: int | None = None
    #: Host ``perf_counter_ns`` when taken: which timed samples it belongs to.
    t_host_ns: int | None = None


@dataclass(frozen=True)
class Telemetry:
    """GPU telemetry over one window.

    Means over the samples for ``gpu_util_pct``, ``mem_util_pct``, ``power_w`` and
    ``sm_clock_mhz``; the maximum for ``temp_c``; the union of the decoded reasons seen for
    ``throttle_reasons`` (sorted). ``energy_j`` is the total-energy counter's increase over the
    window. ``note`` says why fields are None (several reasons joined by ``'; '``).
    """

    gpu_util_pct: float | None = None
    mem_util_pct: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    temp_c: float | None = None
    throttle_reasons: tuple[str, ...] | None = None
    energy_j: float | None = None
    n_samples: int = 0
    duration_s: float | None = None
    note: str | None = None


def summarise(
    samples: Sequence[NvmlSample],
    energy_start_mj: int | None = None,
    energy_end_mj: int | None = None,
    duration_s: float | None = None,
    notes: Sequence[str] = (),
) -> Telemetry:
    """Reduce raw samples and the energy counter readings to a `Telemetry` (pure)."""

    def values(name: str) -> list[float]:
        return [v for s in samples if (v := getattr(s, name)) is not None]

    def mean(name: str) -> float | None:
        vs = values(name)
        return statistics.fmean(vs) if vs else None

    temps = values("temp_c")
    masks = values("throttle_mask")
    reasons = None
    if masks:
        reasons = tuple(sorted({r for m in masks for r in decode_throttle_reasons(int(m))}))
    energy_j = None
    if energy_start_mj is not None and energy_end_mj is not None:
        energy_j = (energy_end_mj - energy_start_mj) / 1000.0
    return Telemetry(
        gpu_util_pct=mean("gpu_util_pct"),
        mem_util_pct=mean("mem_util_pct"),
        power_w=mean("power_w"),
        sm_clock_mhz=mean("sm_clock_mhz"),
        temp_c=max(temps) if temps else None,
        throttle_reasons=reasons,
        energy_j=energy_j,
        n_samples=len(samples),
        duration_s=duration_s,
        note="; ".join(notes) or None,
    )
