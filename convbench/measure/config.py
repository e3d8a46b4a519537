"""`TimingConfig`: the settings of the timing engine, with the defaults every entry point uses
(`convbench run`'s flags, `convbench.run`'s arguments). Plain data: importing it costs nothing,
so the command line can show the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["warm", "cold"]
StopReason = Literal["ci", "time_cap", "max_samples"]


@dataclass(frozen=True)
class TimingConfig:
    """How to time one case; see the module docstring for the phases these drive.

    ``rel_ci``: stop once the ``confidence`` CI of the median lies within ``±rel_ci`` of the
    median. ``max_time_s`` caps the sampling phase's wall time (flushes included).
    ``max_overhead``: largest fraction of a sample the clock overhead may take (warm mode).
    The defaults are `convbench run`'s and `convbench.run`'s: both read them from here.
    """

    warmup_s: float = 0.05
    min_samples: int = 10
    max_samples: int = 1000
    max_time_s: float = 1.0
    rel_ci: float = 0.01
    confidence: float = 0.95
    max_overhead: float = 0.01
    mode: Mode = "warm"

    def __post_init__(self) -> None:
        checks = [
            ("warmup_s", self.warmup_s >= 0, "a number >= 0"),
            ("min_samples", self.min_samples >= 1, "an integer >= 1"),
            ("max_samples", self.max_samples >= self.min_samples, "an integer >= min_samples"),
            ("max_time_s", self.max_time_s > 0, "a number > 0"),
            ("rel_ci", self.rel_ci > 0, "a number > 0"),
            ("confidence", 0 < self.confidence < 1, "a number in (0, 1)"),
            ("max_overhead", 0 < self.max_overhead < 1, "a number in (0, 1)"),
            ("mode", self.mode in ("warm", "cold"), "'warm' or 'cold'"),
        ]
        for name, ok, expected in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"TimingConfig.{name}: expected {expected}, got {value!r}")
