"""How every task of a run is measured: `MeasureOptions`, built from the CLI's flags or the
API's keyword arguments by one function, `measure_options`, with one set of defaults (those of
`TimingConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from convbench.measure.config import TimingConfig

_DEFAULT = TimingConfig()
#: `convbench run`'s and `convbench.run`'s timing defaults, read from `TimingConfig`.
DEFAULTS = {
    "warmup_s": _DEFAULT.warmup_s,
    "min_samples": _DEFAULT.min_samples,
    "max_time_s": _DEFAULT.max_time_s,
    "rel_ci": _DEFAULT.rel_ci,
    "mode": _DEFAULT.mode,
    "max_lost": _DEFAULT.max_lost,
    "max_pace": _DEFAULT.max_pace,
    "interleave": True,
    "cuda_timing": "events",
    "cold_inputs": "flush",
}


@dataclass(frozen=True)
class MeasureOptions:
    """How every task of a run is measured (the CLI's flags)."""

    timing: TimingConfig = field(default_factory=TimingConfig)
    prepare_timing: TimingConfig = field(
        default_factory=lambda: TimingConfig(warmup_s=0.0, min_samples=3, max_time_s=0.25)
    )
    memory_fraction: float = 0.8  # skip CPU cases whose estimate exceeds this × available
    nvml_interval_s: float = 0.01
    #: The backends of one case are timed in interleaved rounds (`convbench.runner.sweep`).
    interleave: bool = True
    #: How CUDA blocks are timed (`convbench.measure.cuda_timing`): events, graph, blocking.
    cuda_timing: str = "events"
    #: Cold mode on CUDA: "flush" writes 2× L2 before each sample; "rotate" instead cycles
    #: through enough copies of the inputs that each call finds its own out of L2.
    cold_inputs: str = "flush"
    #: How fast this machine usually runs the pace reference kernel (µs; from the store's
    #: earlier runs, `convbench.store.Store.usual_pace_us`): the baseline a CPU result's
    #: ``pace`` is taken against. None: the worker's own readings so far.
    usual_pace_us: float | None = None

    def __post_init__(self) -> None:
        from convbench.measure.config import ConfigError

        if self.cuda_timing not in ("events", "graph", "blocking"):
            raise ConfigError("cuda_timing", "events, graph or blocking", self.cuda_timing)
        if self.cold_inputs not in ("flush", "rotate"):
            raise ConfigError("cold_inputs", "flush or rotate", self.cold_inputs)

    def to_dict(self) -> dict:
        return {
            "timing": self.timing.__dict__,
            "prepare_timing": self.prepare_timing.__dict__,
            "memory_fraction": self.memory_fraction,
            "nvml_interval_s": self.nvml_interval_s,
            "interleave": self.interleave,
            "cuda_timing": self.cuda_timing,
            "cold_inputs": self.cold_inputs,
            "usual_pace_us": self.usual_pace_us,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MeasureOptions:
        return cls(
            timing=TimingConfig(**d["timing"]),
            prepare_timing=TimingConfig(**d["prepare_timing"]),
            memory_fraction=d["memory_fraction"],
            nvml_interval_s=d["nvml_interval_s"],
            interleave=d.get("interleave", False),  # runs before interleaving: one by one
            cuda_timing=d.get("cuda_timing", "events"),
            cold_inputs=d.get("cold_inputs", "flush"),
            usual_pace_us=d.get("usual_pace_us"),
        )


def measure_options(
    *,
    warmup_s: float = DEFAULTS["warmup_s"],
    min_samples: int = DEFAULTS["min_samples"],
    max_time_s: float = DEFAULTS["max_time_s"],
    rel_ci: float = DEFAULTS["rel_ci"],
    mode: str = DEFAULTS["mode"],
    max_lost: float = DEFAULTS["max_lost"],
    max_pace: float = DEFAULTS["max_pace"],
    interleave: bool = DEFAULTS["interleave"],
    cuda_timing: str = DEFAULTS["cuda_timing"],
    cold_inputs: str = DEFAULTS["cold_inputs"],
    floor_samples: int = 0,
) -> MeasureOptions:
    """`MeasureOptions` from the sweep's timing settings; ValueError naming the field."""
    timing = TimingConfig(
        warmup_s=warmup_s,
        min_samples=min_samples,
        max_time_s=max_time_s,
        rel_ci=rel_ci,
        mode=mode,
        max_samples=max(1000, min_samples),
        max_lost=max_lost,
        max_pace=max_pace,
        floor_samples=floor_samples,
    )
    return MeasureOptions(
        timing=timing, interleave=interleave, cuda_timing=cuda_timing, cold_inputs=cold_inputs
    )
