"""Every README block marked ``<!-- example: NAME -->`` runs, as written, in a fresh directory.

Python blocks run as a script (``python example.py``, no ``__main__`` guard, as pasted); bash
blocks run with the project's virtualenv first on PATH. The only "tiny settings"
come from the environment, never from editing the examples: the pytest-benchmark runs get a
one-case suite (``CONVBENCH_SUITE``) and short pytest-benchmark rounds (``PYTEST_ADDOPTS``).

The docs' examples (``docs/*.md``) run the same way, by the functions here:
``tests/test_docs.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- example: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)

ONE_CASE = """
[suite]
name = "one"
[[case]]
name = "c3x3"
in_channels = 4
out_channels = 4
spatial = [8, 8]
kernel = 3
padding = 1
"""


def examples(*paths: Path) -> dict[str, tuple[str, str]]:
    """name -> (language, code) of every marked block in ``paths`` (default: the README)."""
    found: dict[str, tuple[str, str]] = {}
    for path in paths or (README,):
        text = path.read_text(encoding="utf-8")
        blocks = MARKER.findall(text)
        assert len(blocks) == text.count("<!-- example: "), (
            f"{path.name}: an example marker is not on a code block"
        )
        for name, lang, code in blocks:
            assert name not in found, f"{path.name}: example {name!r} is named twice"
            found[name] = (lang, code)
    return found


# name -> (how to run it, what its output must show)
EXPECT = {
    "tour": ("bash", "geometric mean speedup per backend"),
    "tune": ("bash", "optimized: (2, 1000)"),
}


def test_every_readme_example_is_run_here():
    assert set(examples()) == set(EXPECT)


@pytest.fixture
def workdir(tmp_path):
    """A fresh directory shaped like the repository root: .venv, benchmarks/, examples/."""
    for name in ("benchmarks", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "one.toml").write_text(ONE_CASE)
    return tmp_path


def run_example(lang: str, code: str, how: str, expected: str, workdir: Path) -> None:
    """Run one example in ``workdir`` as ``how`` says; it must exit 0 and print ``expected``."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["CONVBENCH_SUITE"] = str(workdir / "one.toml")
    env["COLUMNS"] = "160"  # rich tables unwrapped
    env["PYTEST_ADDOPTS"] = "--benchmark-max-time=0.01 --benchmark-min-rounds=2 -p no:cacheprovider"
    if how == "python":
        assert lang == "python"
        (workdir / "example.py").write_text(code)
        cmd = [sys.executable, "example.py"]
    elif how == "pytest":
        assert lang == "python"
        (workdir / "test_readme_example.py").write_text(code)
        cmd = [sys.executable, "-m", "pytest", "test_readme_example.py", "--benchmark-only"]
    else:
        assert lang == "bash"
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert expected in output, output[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECT))
def test_readme_example_runs(name, workdir):
    run_example(*examples()[name], *EXPECT[name], workdir)


def _block_after(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(marker, 1)[1].split("```", 2)[1].strip()


def test_the_set_up_command_leaves_convbench_on_the_path():
    """The README's commands say `convbench …`: after the set-up command, as pasted into a
    shell, that is the venv's."""
    setup = _block_after("<!-- setup-command -->")
    assert setup.rstrip().endswith(". .venv/bin/activate")


def written_by(code: str) -> list[str]:
    """The files an example writes: every ``--out`` and every path a Python example saves."""
    written = re.findall(r"--out\s+(\S+)", code)
    written += re.findall(r"""(?:torch\.save|open)\([^)]*?["']([\w./-]+)["']""", code)
    return written


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="git")
def test_what_the_examples_write_is_ignored_by_git():
    """Nothing a README or docs example writes is left untracked in the checkout: every
    ``--out`` and every file a Python example saves lies under a path .gitignore ignores."""
    found = examples(README, *sorted((ROOT / "docs").glob("**/*.md")))
    written = [path for _, code in found.values() for path in written_by(code)]
    assert written, "no example writes a file: this test checks nothing"
    for path in written:
        done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path])
        assert done.returncode == 0, f"{path}: written by an example, not ignored by git"
