"""The documentation: every ``<!-- example: NAME -->`` block of ``docs/*.md`` runs as the
README's do (the functions of ``tests/test_readme.py``), the README stays short and its links
into the docs resolve, and the site builds with ``mkdocs build --strict`` where MkDocs is
installed (``pip install -e '.[docs]'``; CI installs it, `.ci/run`)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _load_readme_tests():
    """tests/test_readme.py as a module (test modules are not importable by name)."""
    path = Path(__file__).with_name("test_readme.py")
    spec = importlib.util.spec_from_file_location("convbench_readme_examples", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme = _load_readme_tests()
ROOT = readme.ROOT
DOCS = ROOT / "docs"
workdir = readme.workdir  # the same fresh directory the README's examples get
MAX_README_LINES = 300

# name -> (how to run it, what its output must show)
EXPECT = {
    "add-backend": ("python", "pointwise: matches F.conv2d"),
    "from-model": ("bash", "7 conv calls (traced on meta)"),
    "model-totals": ("python", "best per-layer mix"),
    "pytest-benchmark": ("bash", "Comparing against benchmarks from"),
    "pytest-fixture": ("pytest", "1 passed"),
    "python-api": ("python", "conv1d_same_k16"),
}


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("**/*.md"))


def docs_examples() -> dict[str, tuple[str, str]]:
    return readme.examples(*doc_pages())


def test_every_docs_example_is_run_here():
    assert set(docs_examples()) == set(EXPECT)


def test_example_names_are_unique_across_readme_and_docs():
    readme.examples(readme.README, *doc_pages())  # asserts no name is used twice


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECT))
def test_docs_example_runs(name, workdir):
    readme.run_example(*docs_examples()[name], *EXPECT[name], workdir)


def test_readme_is_short():
    lines = readme.README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the docs/ site is for more"


def test_readme_links_resolve():
    """The README's relative links (into docs/, on GitHub) name files that exist."""
    text = readme.README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", text)
    assert any(t.startswith("docs/") for t in targets), "the README links into no docs page"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p.relative_to(DOCS).as_posix() for p in doc_pages()]
    missing = [page for page in missing if f": {page}" not in nav]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def _missing_docs_tools() -> list[str]:
    needed = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
    missing = []
    for name in needed:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


@pytest.mark.slow
@pytest.mark.skipif(
    bool(_missing_docs_tools()), reason="MkDocs not installed: pip install -e '.[docs]'"
)
def test_the_docs_build_strict(tmp_path):
    """Warnings are errors: a broken link or anchor, a page missing from the nav, an API name
    mkdocstrings cannot find, or a generated reference that cannot be made fails the build."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (tmp_path / "metrics" / "index.html").exists()
