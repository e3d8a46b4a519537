"""Benchmark suites: TOML files of convolution problems, and their expansion into tasks.

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
    name = "layer1.0.conv2"       # required, unique, no '@' (reserved for batch variants)
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

Ids are stable: `ConvCase.case_id` hashes the case name and `ConvProblem.key` (the problem's
normalised fields), and `Task.key` hashes the case id with backend, dtype, device and direction;
both are 12 hex digits of SHA-256 over canonical JSON, so the same suite gives the same ids on
every machine and in every run (a test pins one value: ids change only with the name, the
problem's fields, or `ConvProblem`'s own field set). ``count`` is not part of the id: it weights
model totals, it does not change what is measured. With ``batch_sizes`` each case becomes one
case per batch size, named ``NAME@nBATCH`` (its id is that of a case written out with that name
and batch).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from convbench.errors import UserError
from convbench.spec import ConvProblem, ProblemError

DTYPES = ("float32", "float16", "bfloat16", "float64")
DIRECTIONS = ("forward", "backward")
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")
TABLES = ("suite", "defaults", "axes", "case")
SUITE_KEYS = ("name", "description", "source")
AXES_KEYS = ("dtypes", "devices", "directions", "batch_sizes", "backends")
_PROBLEM_KEYS = "batch in_channels out_channels spatial kernel stride padding dilation groups bias"
CASE_KEYS = ("name", *_PROBLEM_KEYS.split(), "count")
REQUIRED = ("name", "in_channels", "out_channels", "spatial", "kernel")
BUILTIN_DEFAULTS = dict(batch=1, stride=1, padding=0, dilation=1, groups=1, bias=True, count=1)
REPO_SUITES = Path(__file__).resolve().parent.parent / "suites"


class SuiteError(UserError):
    """A bad suite file or axis value; the message names file, case and field."""


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
        return ConvCase(f"{self.name}@n{batch}", problem, self.count)


@dataclass(frozen=True)
class Axes:
    """What a suite sweeps. ``None`` means: each case's own batch / every registered backend."""

    dtypes: tuple[str, ...] = ("float32",)
    devices: tuple[str, ...] = ("cpu",)
    directions: tuple[str, ...] = ("forward",)
    batch_sizes: tuple[int, ...] | None = None
    backends: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in AXES_KEYS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class Task:
    """One measurement to make: a case on a backend, dtype, device and direction."""

    case: ConvCase
    backend: str
    dtype: str
    device: str
    direction: str

    @property
    def key(self) -> str:
        """Stable 12-hex-digit id of (case_id, backend, dtype, device, direction)."""
        return _hash([self.case.case_id, self.backend, self.dtype, self.device, self.direction])

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
    ) -> list[Task]:
        """Expand the suite; an argument that is not None overrides the suite's axis.

        Order is deterministic: case (file order) > batch size > device > dtype > direction >
        backend, so the backends for one problem run back to back and partial runs compare.
        """
        from convbench.backends import backend_names  # here: backends may come to use suites

        registered = backend_names()
        names = self._axis("backends", backends)
        names = registered if names is None else names
        unknown = [b for b in names if b not in registered]
        if unknown:
            raise SuiteError(
                f"{self._where('backends', backends)}: unknown backend {unknown[0]!r} "
                f"(registered: {', '.join(registered)})"
            )
        return [
            Task(case, backend, dtype, device, direction)
            for case in self.expanded_cases(batch_sizes)
            for device in self._axis("devices", devices)
            for dtype in self._axis("dtypes", dtypes)
            for direction in self._axis("directions", directions)
            for backend in names
        ]

    def _where(self, name: str, override: object) -> str:
        how = "override of axis" if override is not None else "[axes]: field"
        return f"{self.path or self.name}: {how} {name!r}"

    def _axis(self, name: str, override: Sequence | None) -> tuple | None:
        if override is None:
            return getattr(self.axes, name)
        try:
            return _axis_values(name, override)
        except _FieldError as exc:
            raise SuiteError(f"{self._where(name, override)}: {exc.message}") from None


class SuiteInfo(NamedTuple):
    """One row of `list_suites`; ``n_layers`` is `Suite.layer_count`."""

    name: str
    path: Path
    n_cases: int
    description: str
    n_layers: int


# ---------------------------------------------------------------------------------------------
# Parsing


class _FieldError(Exception):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


_KINDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _kind(value: object) -> str:
    return next((word for t, word in _KINDS.items() if isinstance(value, t)), "a date/time")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expect(name: str, value: object, ok: bool, wanted: str) -> None:
    if not ok:
        raise _FieldError(name, f"expected {wanted}, got {_kind(value)} ({value!r})")


def _check_case_type(name: str, value: object) -> None:
    """Type checks only; values are ConvProblem's to judge."""
    ints = isinstance(value, list) and all(_is_int(v) for v in value)
    if name == "name":
        _expect(name, value, isinstance(value, str), "a string")
        if not value.strip() or "@" in value:
            raise _FieldError(name, f"must be non-empty and contain no '@', got {value!r}")
    elif name in ("batch", "in_channels", "out_channels", "groups", "count"):
        _expect(name, value, _is_int(value), "an integer")
        if name == "count" and value < 1:
            raise _FieldError(name, f"must be >= 1, got {value}")
    elif name == "spatial":
        _expect(name, value, ints, "an array of 1 or 2 integers")
    elif name in ("kernel", "stride", "dilation"):
        _expect(name, value, _is_int(value) or ints, "an integer or an array of integers")
    elif name == "padding":
        ok = _is_int(value) or ints or isinstance(value, str)
        _expect(name, value, ok, 'an integer, an array of integers, "same" or "valid"')
    elif name == "bias":
        _expect(name, value, isinstance(value, bool), "true or false")


def _axis_values(name: str, value: object) -> tuple:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _FieldError(name, f"expected an array, got {_kind(value)} ({value!r})")
    values = tuple(value)
    if not values:
        raise _FieldError(name, "must not be empty")
    for v in values:
        if name == "batch_sizes":
            if not _is_int(v) or v < 1:
                raise _FieldError(name, f"expected positive integers, got {v!r}")
        elif not isinstance(v, str) or not v:
            raise _FieldError(name, f"expected non-empty strings, got {v!r}")
        elif name == "dtypes" and v not in DTYPES:
            raise _FieldError(name, f"unknown dtype {v!r} (expected one of {', '.join(DTYPES)})")
        elif name == "directions" and v not in DIRECTIONS:
            raise _FieldError(name, f"unknown direction {v!r} (expected forward or backward)")
        elif name == "devices" and not _DEVICE.fullmatch(v):
            raise _FieldError(name, f"unknown device {v!r} (expected cpu, cuda or cuda:N)")
    dups = sorted({v for v in values if values.count(v) > 1}, key=values.index)
    if dups:
        raise _FieldError(name, f"{dups[0]!r} is listed twice")
    return values


def _check_keys(table: dict, allowed: Sequence[str], label: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = (
                f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(allowed)
            )
            raise _FieldError(key, f"unknown {label} ({hint})")


def _table(data: dict, name: str, where: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise SuiteError(f"{where}: '{name}' must be a table ([{name}]), got {_kind(value)}")
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
            raise _FieldError("name", "must not be empty")
        context = f"{where}: [axes]"
        axes_table = _table(data, "axes", where)
        _check_keys(axes_table, AXES_KEYS, "axis")
        axes = Axes(**{k: _axis_values(k, v) for k, v in axes_table.items()})
        context = f"{where}: [defaults]"
        defaults = _table(data, "defaults", where)
        _check_keys(defaults, [k for k in CASE_KEYS if k != "name"], "case field")
        for key, value in defaults.items():
            _check_case_type(key, value)
    except _FieldError as exc:
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
                    raise _FieldError(key, "missing (required)")
            for key, value in entry.items():
                _check_case_type(key, value)
            if name in seen:
                raise _FieldError("name", f"duplicate: case #{seen[name]} has the same name")
            seen[name] = index
            if len(fields["spatial"]) not in (1, 2):
                raise _FieldError("spatial", f"expected 1 or 2 entries, got {fields['spatial']}")
            problem = ConvProblem(**{k: fields[k] for k in _PROBLEM_KEYS.split()})
        except (_FieldError, ProblemError) as exc:
            key = exc.field
            message = exc.message if isinstance(exc, _FieldError) else str(exc).split(": ", 1)[1]
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


# ---------------------------------------------------------------------------------------------
# Finding and loading files


def suite_dirs() -> list[Path]:
    """Where suite names are looked up: ``./suites``, then the repository's ``suites/``."""
    dirs = [Path("suites")]
    if REPO_SUITES.resolve() != dirs[0].resolve():
        dirs.append(REPO_SUITES)
    return dirs


def _display(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def find_suite(name_or_path: str | Path) -> Path:
    """Resolve a path (anything with a '/' or ending in .toml) or a suite name to a file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise SuiteError(f"{path}: no such suite file")
        return path
    for directory in suite_dirs():
        candidate = directory / f"{text}.toml"
        if candidate.is_file():
            return _display(candidate)
    known = sorted({p.stem for d in suite_dirs() if d.is_dir() for p in d.glob("*.toml")})
    raise SuiteError(
        f"{text}: no suite of that name in {', '.join(str(d) for d in suite_dirs())} "
        f"(known: {', '.join(known) or 'none'})"
    )


def load_suite(name_or_path: str | Path) -> Suite:
    """Load a suite by file path or by name (``suites/NAME.toml``, see `suite_dirs`)."""
    path = find_suite(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read suite file: {exc}") from None
    return parse_suite(text, path)


def list_suites(directory: str | Path | None = None) -> list[SuiteInfo]:
    """Name, path, case count, description and layer count of every suite in ``directory``
    (default: all of `suite_dirs`, a name in ``./suites`` hiding the same name further down),
    sorted by name. A file that does not load raises its `SuiteError`."""
    if directory is not None and not Path(directory).is_dir():
        raise SuiteError(f"{directory}: no such suite directory")
    dirs = [Path(directory)] if directory is not None else suite_dirs()
    found: dict[str, Path] = {}
    for d in dirs:
        for path in sorted(d.glob("*.toml")) if d.is_dir() else []:
            found.setdefault(path.stem, _display(path))
    infos = []
    for path in found.values():
        suite = load_suite(path)
        infos.append(
            SuiteInfo(suite.name, path, len(suite.cases), suite.description, suite.layer_count)
        )
    return sorted(infos, key=lambda info: info.name)


# ---------------------------------------------------------------------------------------------
# Writing


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
