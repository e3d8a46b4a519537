"""`Result`: one result, typed by the column registry (`convbench.store.columns`).

A result is built in one place in the worker (`convbench.measure.task.new_result`, which the
parent also uses for the rows of tasks that never came back) and completed in one place in
the parent (`convbench.runner.recorder.Recorder.record`: run id, suite, what ran beside it).
Every write is checked: a name that is not a stored column raises KeyError, and a value of the
wrong type raises TypeError naming the column, at the line that wrote it, not at INSERT.

It is a ``dict`` (a mapping of column name to value), so it pickles to and from a worker and
prints as what the store holds.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from convbench.store.columns import BY_NAME


def _checked(name: str, value):
    column = BY_NAME.get(name)
    if column is None or not column.stored:
        raise KeyError(f"{name!r} is not a stored result column (convbench.store.columns)")
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy and torch scalars
    kind = column.sql_type
    if kind == "TEXT" and isinstance(value, str):
        return value
    if kind == "INTEGER" and isinstance(value, numbers.Integral):
        return int(value)
    if kind == "REAL" and isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) or not math.isnan(value) else None
    raise TypeError(f"result column {name!r} is {kind}, got {type(value).__name__} {value!r:.60}")


class Result(dict):
    """One result row whose every write is checked against the column registry."""

    def __init__(self, fields: Mapping | None = None, /, **more) -> None:
        super().__init__()
        self.update(fields or {}, **more)

    def __setitem__(self, name: str, value) -> None:
        super().__setitem__(name, _checked(name, value))

    def update(self, fields: Mapping | None = None, /, **more) -> None:  # type: ignore[override]
        for name, value in {**dict(fields or {}), **more}.items():
            self[name] = value

    def setdefault(self, name: str, value=None):  # type: ignore[override]
        if name not in self:
            self[name] = value
        return self[name]

    def __reduce__(self):
        return (Result, (dict(self),))
