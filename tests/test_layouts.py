"""The layouts axis end to end: a suite's ``[axes] layouts`` and ``--layouts``, the task key,
the store's ``layout`` and ``out_layout`` columns (an older store reads as contiguous), the
winner map, the report and `convbench compare`."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3

import pytest

from convbench import results
from convbench.backends import backend_names
from convbench.cli import main
from convbench.problem import load_suite
from convbench.problem.suite import SuiteError

SUITE = """
[suite]
name = "layouts"

[axes]
layouts = ["contiguous", "channels_last"]
backends = ["naive", "torch", "onednn_packed"]

[[case]]
name = "c2d"
batch = 2
in_channels = 8
out_channels = 8
spatial = [8, 8]
kernel = [3, 3]
padding = 1

[[case]]
name = "c1d"
batch = 2
in_channels = 4
out_channels = 6
spatial = [32]
kernel = 5
padding = "same"
"""


@pytest.fixture(scope="module")
def layout_run(tmp_path_factory, fast, worker_pool):
    """One `convbench run` of a suite with both layouts: (suite path, store, run id)."""
    tmp = tmp_path_factory.mktemp("layouts")
    suite, db = tmp / "layouts.toml", tmp / "r.sqlite"
    suite.write_text(SUITE)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), worker_pool.patched():
        assert main(["run", str(suite), "--db", str(db), *fast]) == 0
    return suite, db, printed.getvalue().split()[1].rstrip(":")


def test_the_axis_expands_into_tasks_with_their_own_keys(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    suite = load_suite(path)
    tasks = suite.tasks(registered=backend_names())
    assert [t.layout for t in tasks[:6]] == ["contiguous"] * 3 + ["channels_last"] * 3
    assert len({t.key for t in tasks}) == len(tasks) == 2 * 2 * 3
    plain = suite.tasks(registered=backend_names(), layouts=["contiguous"])
    # a contiguous task keeps the key it had before the axis existed
    assert plain[0].key == tasks[0].key
    with pytest.raises(SuiteError, match=r"override of axis 'layouts': unknown layout 'nhwc'"):
        suite.tasks(registered=backend_names(), layouts=["nhwc"])
    path.write_text(SUITE.replace('"channels_last"]', '"NHWC"]'))
    with pytest.raises(Exception, match=r"s.toml.*layouts.*unknown layout 'NHWC'"):
        load_suite(path)


def test_a_run_stores_each_layout_and_the_output_layout(layout_run):
    _, db, run_id = layout_run
    df = results.load(db, run_id)
    by = {(r.case, r.layout, r.backend): r for r in df.itertuples()}
    assert len(df) == 12 and df.result_key.is_unique
    for layout in ("contiguous", "channels_last"):
        assert by[("c2d", layout, "naive")].status == "ok"
        assert by[("c2d", layout, "torch")].out_layout == layout  # oneDNN keeps NHWC
        assert by[("c2d", layout, "onednn_packed")].status == "ok"
        assert by[("c1d", layout, "onednn_packed")].status == "unsupported"
        assert by[("c1d", layout, "torch")].status == "ok"
    assert by[("c2d", "channels_last", "onednn_packed")].out_layout == "channels_last"
    assert (df[df.status == "ok"].rel_err < 1e-4).all()


def test_winner_map_report_and_compare_keep_layouts_apart(layout_run, tmp_path, capsys):
    _, db, run_id = layout_run
    out = tmp_path / "r.html"
    assert main(["report", run_id, "--db", str(db), "--out", str(out)]) == 0
    html = out.read_text()
    assert "channels_last" in html and "<th>layout</th>" in html
    capsys.readouterr()
    assert main(["compare", run_id, "--db", str(db), "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert "layout" in text.splitlines()[0] and "channels_last" in text
    assert main(["compare", run_id, run_id, "--db", str(db), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert {r["layout"] for r in rows} == {"contiguous", "channels_last"}


def test_an_older_store_reads_as_contiguous(layout_run, tmp_path):
    _, db, run_id = layout_run
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as src, sqlite3.connect(old) as dst:
        src.backup(dst)
    conn = sqlite3.connect(old)
    conn.execute("DELETE FROM results WHERE layout = 'channels_last'")
    conn.execute("ALTER TABLE results DROP COLUMN layout")
    conn.execute("ALTER TABLE results DROP COLUMN out_layout")
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    df = results.load(old, run_id)
    assert len(df) == 6 and set(df.layout) == {"contiguous"}
    assert df.out_layout.isna().all()  # not known for the older rows
