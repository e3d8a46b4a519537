"""Suite files: TOML parsed and validated into a `Suite`.

A suite file (``suites/NAME.toml``) has four parts; every table rejects keys it does not know::

    [suite]                       # optional; name defaults to the file's stem
    name = "resnet50"
    description = "every conv layer of torchvision's ResNet-50 at 224x224"
    source = "He et al. 2016, https://arxiv.org/abs/1512.03385"

    [defaults]                    # optional: any case field but `name`, applied to every
    batch = 8                     # case that does not set it
    bias = false

    [axes]                        # optional: what the runner sweeps (CLI flags override)
    dtypes = ["float32"]          # float32 | float16 | bfloat16 | float64   (default float32)
    devices = ["cpu"]             # cpu | cuda | cuda:N                      (default cpu)
    directions = ["forward"]      # forward | backward                       (default forward)
    batch_sizes = [1, 8]          # optional: replaces every case's batch, one case per value
    backends = ["naive", "fft"]   # optional: default every registered backend

    [[case]]                      # one table per problem; at least one
    name = "layer1.0.conv2"       # required, unique, no '@n' (reserved: batch variants NAME@nB)
    in_channels = 64              # required
    out_channels = 64             # required
    spatial = [56, 56]            # required: input size, 1 entry = conv1d, 2 = conv2d
    kernel = [3, 3]               # required: int or one entry per spatial dim
    stride = 1                    # int or list                  (default 1)
    padding = 1                   # int, list, "same" or "valid" (default 0)
    dilation = 1                  # int or list                  (default 1)
    groups = 1                    #                              (default 1)
    bias = false                  #                              (default true, as nn.Conv)
    batch = 8                     #                              (default 1)
    count = 3                     # layers of the model that share this problem (default 1)


Every mistake is a `SuiteError` whose one-line message names the file, the case (name and
1-based position) and the field, e.g.
``suites/x.toml: case 'conv3' (#4): field 'in_channels': 30 is not divisible by groups=4``.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from convbench.problem.axes import (
    AXES_KEYS,
    Axes,
    FieldError,
    axis_values,
    is_int,
    kind,
)
from convbench.problem.shapes import ProblemError
from convbench.problem.spec import ConvProblem
from convbench.problem.suite import BATCH_MARK, ConvCase, Suite, SuiteError

TABLES = ("suite", "defaults", "axes", "case")
SUITE_KEYS = ("name", "description", "source")
PROBLEM_KEYS = (
    "batch in_channels out_channels spatial kernel stride padding dilation groups bias".split()
)
CASE_KEYS = ("name", *PROBLEM_KEYS, "count")
REQUIRED = ("name", "in_channels", "out_channels", "spatial", "kernel")
BUILTIN_DEFAULTS = dict(batch=1, stride=1, padding=0, dilation=1, groups=1, bias=True, count=1)


def _expect(name: str, value: object, ok: bool, wanted: str) -> None:
    if not ok:
        raise FieldError(name, f"expected {wanted}, got {kind(value)} ({value!r})")


def _check_case_type(name: str, value: object) -> None:
    """Type checks only; values are ConvProblem's to judge."""
    ints = isinstance(value, list) and all(is_int(v) for v in value)
    if name == "name":
        _expect(name, value, isinstance(value, str), "a string")
        if not value.strip() or BATCH_MARK in value:
            raise FieldError(
                name,
                f"must be non-empty and contain no {BATCH_MARK!r} (it marks batch variants, "
                f"NAME{BATCH_MARK}BATCH), got {value!r}",
            )
    elif name in ("batch", "in_channels", "out_channels", "groups", "count"):
        _expect(name, value, is_int(value), "an integer")
        if name == "count" and value < 1:
            raise FieldError(name, f"must be >= 1, got {value}")
    elif name == "spatial":
        _expect(name, value, ints, "an array of 1 or 2 integers")
    elif name in ("kernel", "stride", "dilation"):
        _expect(name, value, is_int(value) or ints, "an integer or an array of integers")
    elif name == "padding":
        ok = is_int(value) or ints or isinstance(value, str)
        _expect(name, value, ok, 'an integer, an array of integers, "same" or "valid"')
    elif name == "bias":
        _expect(name, value, isinstance(value, bool), "true or false")


def _check_keys(table: dict, allowed: Sequence[str], label: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = (
                f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(allowed)
            )
            raise FieldError(key, f"unknown {label} ({hint})")


def _table(data: dict, name: str, where: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise SuiteError(f"{where}: '{name}' must be a table ([{name}]), got {kind(value)}")
    return value


def parse_suite(text: str, path: str | Path = "<string>") -> Suite:
    """Parse and validate suite TOML. ``path`` is used in messages and as ``Suite.path``."""
    where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{where}: invalid TOML: {exc}") from None
    for key in data:
        if key not in TABLES:
            raise SuiteError(
                f"{where}: unknown top-level key {key!r} (expected [suite], [defaults], "
                "[axes] and [[case]] tables)"
            )
    context = where
    try:
        context = f"{where}: [suite]"
        meta = _table(data, "suite", where)
        _check_keys(meta, SUITE_KEYS, "field")
        for key, value in meta.items():
            _expect(key, value, isinstance(value, str), "a string")
        if not meta.get("name", "x").strip():
            raise FieldError("name", "must not be empty")
        context = f"{where}: [axes]"
        axes_table = _table(data, "axes", where)
        _check_keys(axes_table, AXES_KEYS, "axis")
        axes = Axes(**{k: axis_values(k, v) for k, v in axes_table.items()})
        context = f"{where}: [defaults]"
        defaults = _table(data, "defaults", where)
        _check_keys(defaults, [k for k in CASE_KEYS if k != "name"], "case field")
        for key, value in defaults.items():
            _check_case_type(key, value)
    except FieldError as exc:
        raise SuiteError(f"{context}: field {exc.field!r}: {exc.message}") from None
    cases = _parse_cases(data.get("case", []), defaults, where)
    name = meta.get("name", Path(where).stem)
    return Suite(
        name, meta.get("description", ""), meta.get("source", ""), Path(path), tuple(cases), axes
    )


def _parse_cases(entries: object, defaults: dict, where: str) -> list[ConvCase]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SuiteError(f"{where}: 'case' must be an array of tables ([[case]])")
    if not entries:
        raise SuiteError(f"{where}: no [[case]] tables; a suite needs at least one case")
    cases: list[ConvCase] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        name = entry.get("name")
        label = f"case {name!r} (#{index})" if isinstance(name, str) else f"case #{index}"
        fields = {**BUILTIN_DEFAULTS, **defaults, **entry}
        try:
            _check_keys(entry, CASE_KEYS, "field")
            for key in REQUIRED:
                if key not in entry and key not in defaults:
                    raise FieldError(key, "missing (required)")
            for key, value in entry.items():
                _check_case_type(key, value)
            if name in seen:
                raise FieldError("name", f"duplicate: case #{seen[name]} has the same name")
            seen[name] = index
            if len(fields["spatial"]) not in (1, 2):
                raise FieldError("spatial", f"expected 1 or 2 entries, got {fields['spatial']}")
            problem = ConvProblem(**{k: fields[k] for k in PROBLEM_KEYS})
        except (FieldError, ProblemError) as exc:
            key = exc.field
            message = exc.message if isinstance(exc, FieldError) else str(exc).split(": ", 1)[1]
            # point at [defaults] when a value the error involves was not set in the case
            notes = [
                k
                for k in defaults
                if k not in entry
                and not message.startswith("unknown field")  # it lists every key by name
                and (k == key or re.search(rf"\b{k}\b", message))
            ]
            origin = f" ({', '.join(notes)} from [defaults])" if notes else ""
            raise SuiteError(f"{where}: {label}: field {key!r}{origin}: {message}") from None
        cases.append(ConvCase(name, problem, fields["count"]))
    return cases
