"""A suite's contents: named cases, the tasks they expand to, and their stable ids.

Ids are stable: `ConvCase.case_id` hashes the case name and `ConvProblem.key` (the problem's
normalised fields), and `Task.key` hashes the case id with backend, dtype, device and direction
(and the layout, where it is not ``contiguous``);
both are 12 hex digits of SHA-256 over canonical JSON, so the same suite gives the same ids on
every machine and in every run (a test pins one value: ids change only with the name, the
problem's fields, or `ConvProblem`'s own field set). ``count`` is not part of the id: it weights
model totals, it does not change what is measured. With ``batch_sizes`` each case becomes one
case per batch size, named ``NAME@nBATCH`` (its id is that of a case written out with that name
and batch).

Reading and writing suite files: `convbench.problem.parse` (TOML → `Suite`, validated),
`convbench.problem.files` (finding suites by name), `convbench.problem.write` (`Suite` → TOML).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from convbench.errors import UserError
from convbench.problem.axes import Axes, FieldError, axis_values
from convbench.problem.spec import ConvProblem


class SuiteError(UserError):
    """A bad suite file or axis value; the message names file, case and field."""


#: Marks a batch variant's name: ``NAME@nBATCH``. Case names may not contain it (a model's
#: layer names such as ``conv1@0`` may contain ``@``).
BATCH_MARK = "@n"


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ConvCase:
    """One named problem of a suite; ``count`` = how many model layers share it."""

    name: str
    problem: ConvProblem
    count: int = 1

    @property
    def case_id(self) -> str:
        """Stable 12-hex-digit id of the name and the problem's fields (not ``count``)."""
        return _hash({"name": self.name, "problem": self.problem.key})

    def with_batch(self, batch: int) -> ConvCase:
        """The same problem at another batch size, named ``NAME@nBATCH``."""
        problem = dataclasses.replace(self.problem, batch=batch)
        return ConvCase(f"{self.name}{BATCH_MARK}{batch}", problem, self.count)


@dataclass(frozen=True)
class Task:
    """One measurement to make: a case on a backend, dtype, device, direction and layout."""

    case: ConvCase
    backend: str
    dtype: str
    device: str
    direction: str
    layout: str = "contiguous"

    @property
    def key(self) -> str:
        """Stable 12-hex-digit id of (case_id, backend, dtype, device, direction), and the
        layout where it is not ``contiguous`` (so a task measured before the layouts axis
        keeps its id: ``--resume`` and stores from then still match)."""
        fields = [self.case.case_id, self.backend, self.dtype, self.device, self.direction]
        return _hash(fields if self.layout == "contiguous" else [*fields, self.layout])

    @property
    def problem(self) -> ConvProblem:
        return self.case.problem

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


@dataclass(frozen=True)
class Suite:
    """A loaded suite. ``path`` is where it came from (None if built in code); it is not
    compared, so a suite equals its dump reloaded from anywhere."""

    name: str
    description: str
    source: str
    path: Path | None = field(compare=False)
    cases: tuple[ConvCase, ...]
    axes: Axes = Axes()

    @property
    def layer_count(self) -> int:
        """Model layers the suite stands for: the sum of the cases' counts."""
        return sum(case.count for case in self.cases)

    def expanded_cases(self, batch_sizes: Sequence[int] | None = None) -> list[ConvCase]:
        """The cases, or one case per batch size for each when ``batch_sizes`` (or the suite's
        axis) is set. Order: file order, then batch sizes in the order given."""
        sizes = self._axis("batch_sizes", batch_sizes)
        if sizes is None:
            return list(self.cases)
        return [case.with_batch(n) for case in self.cases for n in sizes]

    def tasks(
        self,
        backends: Sequence[str] | None = None,
        dtypes: Sequence[str] | None = None,
        devices: Sequence[str] | None = None,
        directions: Sequence[str] | None = None,
        batch_sizes: Sequence[int] | None = None,
        layouts: Sequence[str] | None = None,
        *,
        registered: Sequence[str],
        unlisted: Sequence[str] = (),
    ) -> list[Task]:
        """Expand the suite; an argument that is not None overrides the suite's axis.
        ``registered`` is the backends that exist (`convbench.backends.backend_names`): the
        backends axis defaults to them, and a name outside them and ``unlisted`` (test
        backends that run only when named) is refused.

        Order is deterministic: case (file order) > batch size > device > dtype > direction >
        layout > backend, so the backends for one problem run back to back and partial runs
        compare.
        """
        registered = tuple(registered)
        names = self._axis("backends", backends)
        names = registered if names is None else names
        unknown = [b for b in names if b not in registered and b not in unlisted]
        if unknown:
            raise SuiteError(
                f"{self._where('backends', backends)}: unknown backend {unknown[0]!r} "
                f"(registered: {', '.join(registered)})"
            )
        return [
            Task(case, backend, dtype, device, direction, layout)
            for case in self.expanded_cases(batch_sizes)
            for device in self._axis("devices", devices)
            for dtype in self._axis("dtypes", dtypes)
            for direction in self._axis("directions", directions)
            for layout in self._axis("layouts", layouts)
            for backend in names
        ]

    def _where(self, name: str, override: object) -> str:
        how = "override of axis" if override is not None else "[axes]: field"
        return f"{self.path or self.name}: {how} {name!r}"

    def _axis(self, name: str, override: Sequence | None) -> tuple | None:
        if override is None:
            return getattr(self.axes, name)
        try:
            return axis_values(name, override)
        except FieldError as exc:
            raise SuiteError(f"{self._where(name, override)}: {exc.message}") from None


class SuiteInfo(NamedTuple):
    """One row of `list_suites`; ``n_layers`` is `Suite.layer_count`."""

    name: str
    path: Path
    n_cases: int
    description: str
    n_layers: int
