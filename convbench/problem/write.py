"""Suites back to TOML: `suite_to_toml` writes what `convbench.problem.parse` reads."""

from __future__ import annotations

import json
from collections.abc import Iterable

from convbench.problem.axes import AXES_KEYS, Axes
from convbench.problem.parse import CASE_KEYS
from convbench.problem.suite import ConvCase, Suite


def _toml_str(text: str) -> str:
    # JSON's string escapes are all valid TOML basic-string escapes; TOML also forbids raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_str(value)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _compact(value: list[int] | str) -> object:
    """An int if every entry is equal (it reloads to the same normalised tuple)."""
    if not isinstance(value, str) and len(set(value)) == 1:
        return value[0]
    return value


def suite_to_toml(
    suite: Suite | Iterable[ConvCase],
    *,
    name: str | None = None,
    description: str | None = None,
    source: str | None = None,
    axes: Axes | None = None,
    header: str | None = None,
) -> str:
    """Write a suite (or bare cases) in the format `parse_suite` reads, every case field
    explicit, so ``parse_suite(suite_to_toml(s)) == s``. Keyword arguments override (or, for
    bare cases, supply) the [suite] fields and axes; ``header`` becomes leading comments."""
    if isinstance(suite, Suite):
        cases, base = suite.cases, suite
    else:
        cases, base = tuple(suite), Suite("suite", "", "", None, (), Axes())
    axes = axes or base.axes
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    lines += ["[suite]"]
    given = {"name": name, "description": description, "source": source}
    for key, value in given.items():
        lines.append(f"{key} = {_toml_str(getattr(base, key) if value is None else value)}")
    lines += ["", "[axes]"]
    for key in AXES_KEYS:
        if getattr(axes, key) is not None:
            lines.append(f"{key} = {_toml_value(getattr(axes, key))}")
    for case in cases:
        values = {"name": case.name, **case.problem.to_dict(), "count": case.count}
        for key in ("kernel", "stride", "padding", "dilation"):
            values[key] = _compact(values[key])
        lines += ["", "[[case]]"] + [f"{k} = {_toml_value(values[k])}" for k in CASE_KEYS]
    return "\n".join(lines) + "\n"
