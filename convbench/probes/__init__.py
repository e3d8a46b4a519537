"""Measurements taken around a benchmark besides its time.

* `measure_peak_memory` — peak allocator memory of one call above the baseline (memory.py).
* `NvmlSampler` — GPU utilisation, power, clocks, temperature, throttling, energy (nvml.py).
* `CpuSampler` — process CPU utilisation and threads on CPU runs (cpu.py).
* `accuracy`, `reference_conv`, `TOLERANCE` — error against a float64 reference (accuracy.py).
* `telemetry_sampler` — the right sampler for a device's timed window, and the result-row
  fields it fills (window.py).

Every probe degrades instead of failing: a field it cannot measure is None, with a note.
"""

from convbench.probes.accuracy import (
    TOLERANCE,
    Accuracy,
    accuracy,
    reference_conv,
    tolerance,
)
from convbench.probes.cpu import CpuSampler, CpuUsage
from convbench.probes.memory import MemoryResult, measure_peak_memory
from convbench.probes.nvml import NvmlSample, NvmlSampler, Telemetry, decode_throttle_reasons
from convbench.probes.window import (
    TELEMETRY_FIELDS,
    WindowSampler,
    result_fields,
    telemetry_sampler,
)

__all__ = [
    "TELEMETRY_FIELDS",
    "TOLERANCE",
    "Accuracy",
    "CpuSampler",
    "CpuUsage",
    "MemoryResult",
    "NvmlSample",
    "NvmlSampler",
    "Telemetry",
    "WindowSampler",
    "accuracy",
    "decode_throttle_reasons",
    "measure_peak_memory",
    "reference_conv",
    "result_fields",
    "telemetry_sampler",
    "tolerance",
]
