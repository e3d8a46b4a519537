"""`TimingConfig`: the settings of the timing engine, with the defaults every entry point uses
(`convbench run`'s flags, `convbench.run`'s arguments). Plain data: importing it costs nothing,
so the command line can show the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["warm", "cold"]
StopReason = Literal["ci", "time_cap", "max_samples"]


def option(default: Any, flag: str, keyword: str, help: str, **more: Any) -> Any:
    """A config field that users set: its one declaration. ``flag`` is the CLI's
    (`convbench run`), ``keyword`` the Python API's (`convbench.run`) and the flag's argparse
    destination; ``more`` may hold ``metavar``, ``choices`` and ``negate`` (the flag turns a
    True default off, ``--no-interleave``). `convbench.measure.options` collects them."""
    meta = {"flag": flag, "keyword": keyword, "help": help, **more}
    return field(default=default, metadata={"option": meta})


class ConfigError(ValueError):
    """A `TimingConfig` field out of range; callers name it as their user typed it (a flag,
    a keyword) via ``field``, ``expected`` and ``value``."""

    def __init__(self, field: str, expected: str, value: object):
        super().__init__(f"TimingConfig.{field}: expected {expected}, got {value!r}")
        self.field, self.expected, self.value = field, expected, value

    def named(self, names: dict[str, str]) -> str:
        """The one-line message with the field under the caller's name for it."""
        return f"{names.get(self.field, self.field)}: expected {self.expected}, got {self.value!r}"


@dataclass(frozen=True)
class TimingConfig:
    """How to time one case; see the module docstring for the phases these drive.

    ``rel_ci``: stop once the ``confidence`` CI of the median lies within ``±rel_ci`` of the
    median. ``max_time_s`` caps the sampling phase's wall time (flushes included).
    ``max_overhead``: largest fraction of a sample the clock overhead may take (warm mode).
    ``max_lost``: a sample whose disturbance probe says more than this share of its CPU demand
    went unserved is disturbed: kept apart, not used (`convbench.measure.disturbance`).
    ``max_drift``: a measurement whose successive stretches of samples have medians further
    apart than this (max/min - 1) is flagged unsteady (`convbench.measure.engine.stretch_drift`).
    ``round_s``, ``min_rounds``: functions timed together (`measure_interleaved`) take turns,
    each turn a burst of about ``round_s`` of samples (at most ``max_samples // min_rounds``).
    A function whose turns hold several samples (a fast kernel) stops no earlier than after
    ``min_rounds`` turns: the samples of one turn are taken within milliseconds of each other
    and move together, so a comparison's interval comes from the turns
    (`convbench.analysis.gate.round_ratio`); the ratio of two fast kernels measured over 3
    turns moved by 0.6–2.1% (standard deviation) between back-to-back measurements on the
    development VM, over 20 turns 0.25–0.46% (``benchmarks/round_span.py``). A function
    with one sample per turn (a slow call) is governed by ``min_samples``.
    ``max_pace``: a CPU measurement during which the host ran a fixed reference kernel more
    than this share slower (or faster) than it usually does is flagged off-pace
    (`convbench.measure.pace`).
    ``floor_samples``: the time cap does not stop a function that has fewer undisturbed
    samples than this, until it has spent 10 × ``max_time_s`` — for a decision that needs a
    test (`convbench tune`: a rank test cannot reach p < 0.05 on fewer than 4 samples a side).
    The defaults are `convbench run`'s and `convbench.run`'s: both read them from here.
    """

    warmup_s: float = option(
        0.05, "--warmup", "warmup", "warmup time per case in seconds", metavar="S"
    )
    min_samples: int = option(
        10, "--min-samples", "min_samples", "samples taken at least, whatever the interval"
    )
    max_samples: int = 1000
    max_time_s: float = option(
        1.0, "--max-time", "max_time", "per-case cap on the sampling phase in seconds", metavar="S"
    )
    rel_ci: float = option(
        0.01, "--rel-ci", "rel_ci", "stop when the median's 95% CI is within ±this share"
    )
    confidence: float = 0.95
    max_overhead: float = 0.01
    mode: Mode = option(
        "warm", "--mode", "mode", "cold flushes the cache before every sample",
        choices=("warm", "cold"),
    )  # fmt: skip
    max_lost: float = option(
        0.03, "--max-lost", "max_lost", "a CPU sample whose threads waited for a core more "
        "than this share of the time is disturbed and set aside", metavar="F",
    )  # fmt: skip
    max_drift: float = 0.10
    round_s: float = 0.005
    min_rounds: int = 20
    floor_samples: int = 0
    max_pace: float = option(
        0.10, "--max-pace", "max_pace", "flag a result measured while the host ran a fixed "
        "reference kernel more than this share off its usual speed", metavar="F",
    )  # fmt: skip

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
            ("max_lost", 0 < self.max_lost <= 1, "a number in (0, 1]"),
            ("max_drift", self.max_drift > 0, "a number > 0"),
            ("round_s", self.round_s > 0, "a number > 0"),
            ("min_rounds", self.min_rounds >= 1, "an integer >= 1"),
            ("floor_samples", 0 <= self.floor_samples <= self.max_samples, "0 to max_samples"),
            ("max_pace", self.max_pace > 0, "a number > 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(name, expected, getattr(self, name))
