"""How every task of a run is measured: `MeasureOptions`, and the measurement options users
set, each declared once as field metadata (`convbench.measure.config.option`) on
`TimingConfig` or `MeasureOptions`.

From those declarations come: `OPTIONS` (the list), `DEFAULTS`, the CLI's flags
(`add_arguments`), the Python API's keywords and their validation (`from_user`), the error
messages naming a flag or a keyword, and the docs' option reference (`reference_markdown`).
Adding an option is one declaration, plus the code that uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from convbench.measure.config import ConfigError, TimingConfig, option


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
    interleave: bool = option(
        True, "--no-interleave", "interleave", "time each backend alone instead of the "
        "backends of a case in shuffled rounds", negate=True,
    )  # fmt: skip
    #: How CUDA blocks are timed (`convbench.measure.cuda_timing`): events, graph, blocking.
    cuda_timing: str = option(
        "events", "--cuda-timing", "cuda_timing", "CUDA: CUDA events around the launches; "
        "the block replayed as a CUDA graph; or queued behind a blocking kernel so launch "
        "overhead is not timed", choices=("events", "graph", "blocking"),
    )  # fmt: skip
    #: Cold mode on CUDA: "flush" writes 2× L2 before each sample; "rotate" instead cycles
    #: through enough copies of the inputs that each call finds its own out of L2.
    cold_inputs: str = option(
        "flush", "--cold-inputs", "cold_inputs", "CUDA --mode cold: write 2× L2 before each "
        "sample, or rotate among copies of the inputs that together fill 2× L2",
        choices=("flush", "rotate"),
    )  # fmt: skip
    #: How fast this machine usually runs the pace reference kernel (µs; from the store's
    #: earlier runs, `convbench.store.Store.usual_pace_us`): the baseline a CPU result's
    #: ``pace`` is taken against. None: the worker's own readings so far.
    usual_pace_us: float | None = None

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class Option:
    """One measurement option users set: where it lives (``owner`` ``timing`` for
    `TimingConfig`, ``options`` for `MeasureOptions`), its field, default and declaration."""

    owner: str
    field: str
    default: Any
    flag: str
    keyword: str
    help: str
    metavar: str | None = None
    choices: tuple | None = None
    negate: bool = False


def _declared(owner: str, cls) -> list[Option]:
    return [
        Option(owner, f.name, f.default, **f.metadata["option"])
        for f in dataclasses.fields(cls)
        if "option" in f.metadata
    ]


OPTIONS: tuple[Option, ...] = (
    *_declared("timing", TimingConfig),
    *_declared("options", MeasureOptions),
)
_BY_KEYWORD = {o.keyword: o for o in OPTIONS}
#: Each option's default under its field's name.
DEFAULTS: dict[str, Any] = {o.field: o.default for o in OPTIONS}


def add_arguments(parser: argparse.ArgumentParser, keywords: Iterable[str] | None = None) -> None:
    """The flags of the options (all, or those named by ``keywords``), with their defaults
    in the help."""
    for o in OPTIONS if keywords is None else [_BY_KEYWORD[k] for k in keywords]:
        if o.negate:
            parser.add_argument(o.flag, dest=o.keyword, action="store_false", help=o.help)
            continue
        kind = type(o.default)
        help = f"{o.help} (default: {o.default})".replace("%", "%%")
        parser.add_argument(
            o.flag, dest=o.keyword, type=None if o.choices else kind, default=o.default,
            choices=o.choices, metavar=o.metavar, help=help,
        )  # fmt: skip


def from_user(values: Mapping[str, Any], names: str = "keyword", **fixed: Any) -> MeasureOptions:
    """`MeasureOptions` from what a user set: ``values`` by keyword (an argparse namespace's
    ``vars`` or the API's keyword arguments; others are ignored), ``fixed`` by field name.
    A bad value raises ValueError naming the option as the user typed it: its ``flag`` or its
    ``keyword`` (``names``)."""
    fields = {o.field: values[o.keyword] for o in OPTIONS if o.keyword in values}
    try:
        return measure_options(**fields, **fixed)
    except ConfigError as exc:
        raise ValueError(exc.named({o.field: getattr(o, names) for o in OPTIONS})) from None


def check_keywords(keywords: Iterable[str], where: str) -> None:
    """TypeError for a keyword that is not a measurement option, naming the known ones."""
    unknown = sorted(set(keywords) - set(_BY_KEYWORD))
    if unknown:
        known = ", ".join(sorted(_BY_KEYWORD))
        raise TypeError(f"{where}: unknown keyword {unknown[0]!r} (measurement options: {known})")


def measure_options(*, floor_samples: int = 0, **fields: Any) -> MeasureOptions:
    """`MeasureOptions` from option values by field name (`DEFAULTS` for the rest); a bad
    value raises `ConfigError` naming the field."""
    unknown = sorted(set(fields) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"measure_options: unknown option {unknown[0]!r}")
    values = DEFAULTS | fields
    timing = {o.field: values[o.field] for o in OPTIONS if o.owner == "timing"}
    max_samples = max(TimingConfig.max_samples, timing["min_samples"])
    timing = TimingConfig(**timing, max_samples=max_samples, floor_samples=floor_samples)
    rest = {o.field: values[o.field] for o in OPTIONS if o.owner == "options"}
    return MeasureOptions(timing=timing, **rest)


def reference_markdown() -> str:
    """The measurement options as a Markdown table (the docs' option reference)."""
    lines = ["| flag | Python keyword | default | description |", "|---|---|---|---|"]
    for o in OPTIONS:
        choices = f" One of: {', '.join(o.choices)}." if o.choices else ""
        default = "on" if o.negate else f"`{o.default}`"
        lines.append(f"| `{o.flag}` | `{o.keyword}` | {default} | {o.help}.{choices} |")
    return "\n".join(lines) + "\n"
