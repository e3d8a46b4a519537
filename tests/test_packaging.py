"""The package as users install it: a built wheel holds every module, template and shipped
suite, and an ordinary (non-editable) install finds the suites from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "results", "reports", "build", "dist", "*.egg-info", "__pycache__", ".*"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the checkout itself is left untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp / "dist"), str(src)],
        check=True,
        timeout=300,
    )
    (path,) = (tmp / "dist").glob("convbench-*.whl")
    return path


def test_the_wheel_holds_every_module_template_and_suite(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    suites = sorted(ROOT.glob("suites/*.toml"))
    assert len(suites) >= 8
    for path in suites:
        assert f"convbench/suites/{path.name}" in names, path.name
    for path in (ROOT / "convbench").rglob("*.py"):
        assert path.relative_to(ROOT).as_posix() in names, path
    for path in (ROOT / "convbench/report/templates").iterdir():
        assert f"convbench/report/templates/{path.name}" in names, path
    assert "convbench/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_every_package_of_the_tree_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "convbench").rglob("*.py")}
    assert found | {"convbench.suites"} == listed


def test_the_version_is_defined_once():
    import convbench

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"]["attr"] == (
        "convbench._version.__version__"
    )
    from importlib.metadata import version

    assert version("convbench") == convbench.__version__


def test_an_installed_wheel_finds_its_suites_from_any_directory(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
        + [str(wheel)],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), COLUMNS="200")
    env.pop("CONVBENCH_SUITES", None)

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "convbench", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    where = cli("--help")
    assert where.returncode == 0, where.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import convbench; print(convbench.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()).is_relative_to(site)  # the wheel, not the checkout
    listed = cli("suites")
    assert listed.returncode == 0, listed.stderr
    for path in ROOT.glob("suites/*.toml"):
        assert path.stem in listed.stdout
    run = cli(
        "run", "smoke", "--backends", "im2col,onednn", "--directions", "forward",
        "--max-time", "0.02", "--warmup", "0.0",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "results/convbench.sqlite" in run.stdout
    assert (elsewhere / "results" / "convbench.sqlite").is_file()


def test_no_module_over_400_lines():
    """The layout keeps each module readable in one sitting; a module that grows past this
    is split by concept (as fft_plan/fft_dft, nvml/telemetry)."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "convbench").rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert not long, long
