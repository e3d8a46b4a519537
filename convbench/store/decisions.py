"""The decisions file `convbench tune` writes and `convbench.optimize` reads.

A JSON document, indented and with sorted keys so that two tunes diff line by line::

    {
      "format": "convbench-decisions/1",
      "model": "examples.models:vgg16",
      "input_shape": [8, 3, 224, 224],
      "created": "2026-12-02T04:10:00+00:00",
      "decisions": [
        {
          "problem": "3f2a…",                 # ConvProblem.key of the layer's call
          "shape": {"batch": 8, "in_channels": 64, …},   # its fields, for people
          "layers": ["0.2", "0.5"],           # the module paths that run it
          "dtype": "float32", "device": "cpu", "pass": "forward",
          "backend": "winograd", "options": {"m": [4, 4], …},
          "median_ms": 12.3, "torch_ms": 17.0, "speedup": 1.38, "speedup_ci": [1.33, 1.41],
          "rel_err": 2.1e-06, "reason": "…", "run_id": "tune-…", "case": "0.2",
          "reverted_from": "fft",             # only where the model-level guard reverted it
          "context": {"torch": "2.13.0+cpu", "device_name": "…", "threads": 2,
                      "convbench": "0.1.0"}
        }, …
      ],
      "layout": {"memory_format": "channels_last", "device": "cpu", "context": {…},
                 "reason": "…", "variant": "tuned, compiled",
                 "folds": [["layer1.0.conv1", "layer1.0.bn1"], …],
                 "compile": {"options": {"freezing": true}}},   # optional: see below
      "end_to_end": [{"mode": "inference", "speedup": 1.31, "ci_low": 1.27, …}],
      "plan": {"dtype": "float32", "device": "cpu", "context": {…},   # optional: see below
               "layers": [{"layer": "layer1.0.conv2", "problem": "3f2a…",
                           "backend": "winograd", "layout": "channels_last",
                           "arrives": "contiguous", "convert": true,
                           "ms": 4.1, "convert_ms": 0.3, "replay_ms": 4.6}, …],
               "conv_ms": 61.2, "convert_ms": 1.1, "join_ms": 0.0, "plan_ms": 62.3,
               "predicted_ms": 66.0, "replay_pace_us": 61.5, "original_ms": 70.4,
               "floor_ms": 58.9}
    }

An entry is keyed by (problem, dtype, device, pass) and made stale by its ``context``: a
decision measured with another torch, on another device, with another thread count or by
another convbench is ignored on load, with one line saying which and why. A file that is not
such a document — or an entry missing a field or holding a wrong type — is a `UserError`
naming the file, the entry and the field.

``layout`` is a decision about the whole model, not a layer: the memory format its activations
and 4-D weights are kept in (``contiguous``, PyTorch's default NCHW, or ``channels_last``,
NHWC). `tune` makes it end to end, since a layout pays only when every layer keeps it (a
conversion before and after each layer costs more than a layer gains); it is made stale by
its ``context`` as the entries are. Absent: ``contiguous``. The same record holds the other
model-level choices of the kept variant: ``folds``, the [convolution, BatchNorm] pairs whose
BatchNorm is folded into the convolution's plan at inference, and ``compile``, the keyword
arguments of `torch.compile` it was measured with (null or absent: not compiled).

``plan`` is the per-layer plan of an inference tune (`convbench.flows.plan`): each
convolution call's backend for the forward and the layout it computes in, the layout its
input arrives in, and whether it converts it (``convert``: exactly where the plan switches),
with its times: ``ms`` and ``convert_ms``, the layer and its conversion measured apart (what
the plan minimised, summed in ``plan_ms`` with ``join_ms``, the residual sums' reads of a term
across layouts), and ``replay_ms``, the layer replayed in execution order
(`convbench.flows.replay`), summed in ``predicted_ms``, with the host's pace during the replay
on the CPU (``replay_pace_us``, `convbench.measure.pace`); files from before the replay have no
``replay_ms`` and predict ``plan_ms``. ``original_ms`` and ``floor_ms``: the original model's
convolutions (torch, in the layouts the model hands them) and each one's fastest measured
option, measured apart (`convbench.flows.plan.headroom`). `convbench.optimize` applies the
plan where the layout record's ``per_layer`` is true (the kept variant is the plan); absent,
or stale by its ``context``, every layer runs as the entries say, in the model's memory
format.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from convbench.errors import UserError
from convbench.problem.axes import DTYPES
from convbench.problem.axes import PASS_NAMES as PASSES

FORMAT = "convbench-decisions/1"
CONTEXT_FIELDS = ("torch", "device_name", "threads", "convbench")
MEMORY_FORMATS = ("contiguous", "channels_last")
#: The layouts a plan's layer may compute in, or its input arrive in.
PLAN_LAYOUTS = (*MEMORY_FORMATS, "strided")
_ENTRY_FIELDS = {
    "problem": str,
    "dtype": str,
    "device": str,
    "pass": str,
    "backend": str,
    "context": dict,
}


@dataclass
class DecisionTable:
    """Loaded decisions: ``entries`` (each a dict as in the file) and, after `fresh`, the
    lines explaining what was ignored."""

    path: str
    entries: list[dict]
    model: str = ""
    input_shape: list[int] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    layout: dict | None = None
    plan: dict | None = None

    @property
    def per_layer(self) -> dict | None:
        """The per-layer plan, where the kept variant applies it (the layout record's
        ``per_layer``), else None."""
        return self.plan if (self.layout or {}).get("per_layer") else None

    @property
    def memory_format(self) -> str:
        """The model's memory format (`MEMORY_FORMATS`): the layout's, else contiguous."""
        return (self.layout or {}).get("memory_format", "contiguous")

    @property
    def folds(self) -> list[list[str]]:
        """The BatchNorms folded into the convolution before them: [convolution, BatchNorm]
        name pairs (the layout's ``folds``; none where absent)."""
        return list((self.layout or {}).get("folds") or [])

    @property
    def compile(self) -> dict | None:
        """The keyword arguments of `torch.compile` the kept model was measured with (the
        layout's ``compile``), or None: not compiled."""
        return (self.layout or {}).get("compile")

    def lookup(self) -> dict[tuple[str, str, str, str], dict]:
        """(problem, dtype, device, pass) -> entry."""
        return {(e["problem"], e["dtype"], e["device"], e["pass"]): e for e in self.entries}

    def fresh(self, context_of) -> DecisionTable:
        """The entries whose context matches ``context_of(device)`` (the current
        environment); the others are dropped, each with a line in ``ignored``."""
        kept, ignored, current = [], [], {}

        def changed(record: dict) -> str:
            device = record["device"]
            if device not in current:
                current[device] = context_of(device)
            now = current[device]
            return ", ".join(
                f"{name} {record['context'].get(name)!r} (now {now.get(name)!r})"
                for name in CONTEXT_FIELDS
                if record["context"].get(name) != now.get(name)
            )

        for i, entry in enumerate(self.entries, start=1):
            if stale := changed(entry):
                ignored.append(
                    f"{self.path}: entry #{i} ({entry['pass']} of problem {entry['problem']} on "
                    f"{entry['device']}) ignored: made with {stale}"
                )
            else:
                kept.append(entry)
        layout = self.layout
        if layout is not None and (stale := changed(layout)):
            ignored.append(
                f"{self.path}: layout {layout['memory_format']} on {layout['device']} ignored "
                f"(the model stays contiguous): made with {stale}"
            )
            layout = None
        plan = self.plan
        if plan is not None and (stale := changed(plan)):
            ignored.append(f"{self.path}: plan on {plan['device']} ignored: made with {stale}")
            plan = None
        return DecisionTable(self.path, kept, self.model, self.input_shape, ignored, layout, plan)


def write(
    path: str | Path,
    entries: list[dict],
    *,
    model: str,
    input_shape,
    end_to_end: list[dict] | None = None,
    layout: dict | None = None,
    plan: dict | None = None,
) -> Path:
    """Write a decisions file (see the module docstring); ``end_to_end``: the whole-model
    comparisons `tune` measured with these decisions, kept for the reader; ``layout``: the
    model's memory format, where `tune` chose one; ``plan``: the per-layer plan."""
    document = {
        "format": FORMAT,
        "model": model,
        "input_shape": list(input_shape),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "decisions": sorted(
            entries, key=lambda e: (e.get("layers") or [""])[0:1] + [e["pass"], e["problem"]]
        ),
    }
    if end_to_end is not None:
        document["end_to_end"] = end_to_end
    if layout is not None:
        document["layout"] = layout
    if plan is not None:
        document["plan"] = plan
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read(path: str | Path) -> DecisionTable:
    """Load and validate a decisions file; every problem is a one-line `UserError`."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot read decisions file: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not a decisions file (invalid JSON: {exc})") from None
    return parse(document, where)


def parse(document: object, where: str = "<decisions>") -> DecisionTable:
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, Mapping) else type(document)
        raise UserError(f"{where}: not a decisions file (format {found!r}, expected {FORMAT!r})")
    entries = document.get("decisions")
    if not isinstance(entries, list):
        raise UserError(f"{where}: field 'decisions': expected a list of entries")
    for i, entry in enumerate(entries, start=1):
        _check(entry, _ENTRY_FIELDS, f"{where}: entry #{i}", "pass", PASSES)
    return DecisionTable(
        where,
        [dict(e) for e in entries],
        str(document.get("model", "")),
        list(document.get("input_shape") or []),
        layout=_layout(document.get("layout"), where),
        plan=_plan(document.get("plan"), where),
    )


def _check(record: object, fields: Mapping[str, type], where: str, name: str, allowed) -> None:
    """``record`` is an object holding ``fields`` with their types, and its field ``name`` is
    one of ``allowed``; else a one-line `UserError` starting with ``where``."""
    if not isinstance(record, Mapping):
        raise UserError(f"{where}: expected an object, got {type(record).__name__}")
    for field_name, kind in fields.items():
        if field_name not in record:
            raise UserError(f"{where}: field {field_name!r} is missing")
        if not isinstance(record[field_name], kind):
            raise UserError(
                f"{where}: field {field_name!r}: expected {kind.__name__}, "
                f"got {record[field_name]!r}"
            )
    if record[name] not in allowed:
        raise UserError(
            f"{where}: field {name!r}: {record[name]!r} is not one of " + ", ".join(allowed)
        )


_LAYOUT_FIELDS = {"memory_format": str, "device": str, "context": dict}


def _layout(layout: object, where: str) -> dict | None:
    if layout is None:
        return None
    if not isinstance(layout, Mapping):
        raise UserError(f"{where}: field 'layout': expected an object, got {layout!r}")
    _check(layout, _LAYOUT_FIELDS, f"{where}: layout", "memory_format", MEMORY_FORMATS)
    folds = layout.get("folds") or []
    if not isinstance(folds, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(n, str) for n in pair)
        for pair in folds
    ):
        raise UserError(
            f"{where}: layout: field 'folds': expected [convolution, BatchNorm] name pairs, "
            f"got {folds!r}"
        )
    compile_options = layout.get("compile")
    if compile_options is not None and not isinstance(compile_options, Mapping):
        raise UserError(
            f"{where}: layout: field 'compile': expected an object (torch.compile's keyword "
            f"arguments) or null, got {compile_options!r}"
        )
    return dict(layout)


_PLAN_FIELDS = {"dtype": str, "device": str, "context": dict, "layers": list}
_STEP_FIELDS = {"layer": str, "problem": str, "backend": str, "layout": str, "arrives": str,
                "convert": bool}  # fmt: skip


def _plan(plan: object, where: str) -> dict | None:
    if plan is None:
        return None
    if not isinstance(plan, Mapping):
        raise UserError(f"{where}: field 'plan': expected an object, got {plan!r}")
    _check(plan, _PLAN_FIELDS, f"{where}: plan", "dtype", DTYPES)
    for i, step in enumerate(plan["layers"], start=1):
        here = f"{where}: plan: layer #{i}"
        _check(step, _STEP_FIELDS, here, "layout", MEMORY_FORMATS)
        _check(step, {}, here, "arrives", PLAN_LAYOUTS)
        if step["convert"] != (step["arrives"] != step["layout"]):
            raise UserError(
                f"{here}: field 'convert': {step['convert']!r} but the input arrives in "
                f"{step['arrives']} and the layer computes in {step['layout']}"
            )
    return dict(plan)
