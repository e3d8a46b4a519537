"""The house rules, checked on the package's source: no module over 400 lines, no import cycle
between subpackages (imports inside functions count), and no private name used across one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "convbench"
MODULES = sorted(PACKAGE.rglob("*.py"))


def unit_of(module: str) -> str:
    """``convbench.store.frames`` -> ``store``; ``convbench.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<package>"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__"
    )


def imports(path: Path):
    """(line, imported module, imported name or None) for every import in the file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                yield node.lineno, node.module, alias.name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400


def test_no_import_cycle_between_subpackages():
    edges: dict[str, set[str]] = {}
    for path in MODULES:
        me = module_name(path)
        if me == "convbench":  # the package's lazy re-exports are not a unit
            continue
        for _, module, _ in imports(path):
            if module.startswith("convbench.") and unit_of(module) != unit_of(me):
                edges.setdefault(unit_of(me), set()).add(unit_of(module))

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            unit = todo.pop()
            if unit == goal:
                return True
            if unit not in seen:
                seen.add(unit)
                todo += edges.get(unit, ())
        return False

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and reaches(b, a))
    assert cycles == []


def test_no_private_name_crosses_a_subpackage():
    crossing = []
    for path in MODULES:
        me = unit_of(module_name(path))
        for line, module, name in imports(path):
            private = name is not None and name.startswith("_") and not name.startswith("__")
            if module.startswith("convbench.") and private and unit_of(module) != me:
                crossing.append(f"{path.relative_to(PACKAGE)}:{line}: {module}.{name}")
    assert crossing == []
