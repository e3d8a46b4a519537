"""Finding suites: by path, or by name in the suite folders.

A name (``resnet50``) is looked up, in order, in the folders listed in ``$CONVBENCH_SUITES``
(separated like ``PATH``), in ``./suites``, and in the suites shipped with convbench. The
shipped ones are the repository's top-level ``suites/`` folder, which the wheel also carries
as the package ``convbench.suites`` (``pyproject.toml`` maps it there): they are found through
`importlib.resources`, so an ordinary ``pip install`` finds them from any directory, and an
editable install finds the checkout's folder itself.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from convbench.problem.parse import parse_suite
from convbench.problem.suite import Suite, SuiteError, SuiteInfo

ENV_VAR = "CONVBENCH_SUITES"


def shipped_dir() -> Path | None:
    """The folder of the suites that come with convbench, or None if it is not on disk."""
    try:
        root = importlib.resources.files("convbench.suites")
    except ModuleNotFoundError:
        return None
    return root if isinstance(root, Path) and root.is_dir() else None


def suite_dirs() -> list[Path]:
    """Where suite names are looked up, first match wins (see the module docstring)."""
    dirs = [Path(d) for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d]
    dirs.append(Path("suites"))
    shipped = shipped_dir()
    if shipped is not None:
        dirs.append(shipped)
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


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
