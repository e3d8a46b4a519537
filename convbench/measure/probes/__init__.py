"""Measurements taken around a benchmark besides its time.

* `measure_peak_memory` — peak allocator memory of one call above the baseline (memory.py).
* `NvmlSampler` — GPU utilisation, power, clocks, temperature, throttling, energy (nvml.py).
* `CpuSampler` — process CPU utilisation and threads on CPU runs (cpu.py).
* `accuracy` — error against the float64 reference (accuracy.py).
* `telemetry_sampler` — the right sampler for a device's timed window, and the result-row
  fields it fills (window.py).

Every probe degrades instead of failing: a field it cannot measure is None, with a note.
"""

from convbench.measure.probes.accuracy import Accuracy, accuracy
from convbench.measure.probes.cpu import CpuSampler, CpuUsage
from convbench.measure.probes.memory import MemoryResult, measure_peak_memory
from convbench.measure.probes.nvml import (
    NvmlSample,
    NvmlSampler,
    Telemetry,
    decode_throttle_reasons,
)
from convbench.measure.probes.window import (
    TELEMETRY_FIELDS,
    WindowSampler,
    result_fields,
    telemetry_sampler,
)

__all__ = [
    "TELEMETRY_FIELDS",
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
    "result_fields",
    "telemetry_sampler",
]
