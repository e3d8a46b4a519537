"""The worked examples of docs/extending.md hold: adding a metric column is one registry
entry, adding a measurement option is one declaration. Each test edits a copy of the package
exactly as the docs say and checks everything that derives from the edit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "convbench"


@pytest.fixture
def package_copy(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "convbench", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def edit(path: Path, anchor: str, added: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(anchor) == 1, anchor
    path.write_text(text.replace(anchor, anchor + added), encoding="utf-8")


def run(cwd: Path, code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_metric_column_is_one_registry_entry(package_copy):
    edit(
        package_copy / "convbench/store/columns.py",
        "RESULTS: tuple[Column, ...] = (\n",
        '    Column(name="page_faults_per_call", sql="REAL", description="Minor page faults '
        'per timed call.", unit="1/call", display="detail", label="page faults"),\n',
    )
    code = """
import pandas as pd
from convbench.store import Store, columns
from convbench.store.record import Result
from convbench.report.tables import results_table
with Store(None) as store:
    store.add_result(Result(run_id="r", result_key="k", status="ok", page_faults_per_call=2.5))
    (row,) = store.result_rows("r")
assert row["page_faults_per_call"] == 2.5
frame = pd.DataFrame([row])
for name in ("case_name", "backend", "device", "dtype", "direction"):
    frame[name] = "x"
table = results_table(frame.rename(columns=columns.FRAME_RENAMES), {}, {}, {})
assert "page faults [1/call]" in table["columns"], table["columns"]
assert "`page_faults_per_call`" in columns.reference_markdown()
print("ok")
"""
    proc = run(package_copy, code)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_a_measurement_option_is_one_declaration(package_copy):
    config = package_copy / "convbench/measure/config.py"
    text = config.read_text(encoding="utf-8")
    declared = (
        'max_drift: float = option(0.10, "--max-drift", "max_drift", "flag a result whose '
        'successive stretches of samples have medians further apart than this share", '
        'metavar="F")'
    )
    config.write_text(text.replace("max_drift: float = 0.10", declared, 1), encoding="utf-8")
    code = """
import argparse
from convbench.cli import build_parser
from convbench.cli.run import _plan
from convbench.measure import options
args = build_parser().parse_args(["run", "smoke", "--max-drift", "0.2"])
assert _plan(args).options.timing.max_drift == 0.2
assert options.from_user({"max_drift": 0.3}).timing.max_drift == 0.3
try:
    options.from_user({"max_drift": -1.0}, names="flag")
except ValueError as exc:
    assert str(exc) == "--max-drift: expected a number > 0, got -1.0", exc
assert "`--max-drift`" in options.reference_markdown()
print("ok")
"""
    proc = run(package_copy, code)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
