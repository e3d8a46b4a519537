"""The column registry and the typed result record built from it."""

from __future__ import annotations

import pickle
import sqlite3

import pytest

from convbench.report import tables
from convbench.store import Store, columns, schema
from convbench.store.record import Result


def test_the_schema_and_the_report_derive_from_the_registry():
    assert schema.RESULT_FIELDS == columns.STORED_NAMES
    assert dict(schema.RESULT_COLUMNS)["status"] == "TEXT NOT NULL"
    headers = [c.header for c in columns.SHOWN]
    assert headers[:3] == ["case", "backend", "device"]
    assert "median [ms]" in headers and "IQR [ms]" in headers
    assert all(c.stored or c.display != "hidden" for c in columns.RESULTS)


def test_every_column_is_documented_in_the_reference():
    text = columns.reference_markdown()
    for column in columns.RESULTS:
        assert f"`{column.name}" in text
        assert column.description.strip()


def test_a_bad_column_entry_is_refused_naming_its_field():
    with pytest.raises(ValueError, match="column 'x': field 'sql'"):
        columns.Column("x", "BLOB", "d")


def test_every_write_to_a_result_is_checked():
    row = Result(backend="naive", median_ms=1, n_samples=True)
    assert row["median_ms"] == 1.0 and isinstance(row["median_ms"], float)
    assert row["n_samples"] == 1
    with pytest.raises(KeyError, match="'median' is not a stored result column"):
        row["median"] = 1.0
    with pytest.raises(TypeError, match="result column 'median_ms' is REAL, got str"):
        row.update(median_ms="fast")
    with pytest.raises(KeyError, match="'ci95_ms'"):  # computed by the report, never stored
        row.setdefault("ci95_ms", 1.0)
    assert pickle.loads(pickle.dumps(row)) == row
    assert type(pickle.loads(pickle.dumps(row))) is Result


def test_a_store_missing_a_registered_column_gains_it_on_open(tmp_path):
    """A store written before a column was added (the previous schema) opens, gains the column
    with NULL in its rows, and keeps every row it had."""
    db = tmp_path / "old.sqlite"
    with Store(db) as store:
        store.create_run("r", suite="s", suite_path=None, command="c", env={}, config={})
        store.add_result(Result(run_id="r", result_key="k", status="ok", median_ms=2.0))
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE results DROP COLUMN pace")
    conn.commit()
    conn.close()
    with Store(db) as store:
        (row,) = store.result_rows("r")
    assert row["median_ms"] == 2.0 and row["pace"] is None


def test_the_report_table_shows_the_registry_columns_and_marks_the_detail_ones():
    import pandas as pd

    row = Result(run_id="r", result_key="k", case_name="c", backend="naive", device="cpu")
    row.update(dtype="float32", direction="forward", status="ok", median_ms=2.0, gflops=50.0)
    row.update(ci_low_ms=1.9, ci_high_ms=2.1, rel_err=1e-7, peak_mem_bytes=2**21, n_samples=7)
    df = pd.DataFrame([row]).rename(columns=columns.FRAME_RENAMES)
    table = tables.results_table(df, {"r": {"cpu/float32": 100.0}}, {"float32": 1e-4}, {})
    headers = [c.header for c in columns.SHOWN]
    headers[headers.index("peak mem [bytes]")] = "peak mem [MiB]"
    assert table["columns"] == headers
    assert table["details"] == [c.display == "detail" for c in columns.SHOWN]
    cells = dict(zip(table["columns"], table["rows"][0]["cells"], strict=True))
    assert cells["case"]["text"] == "c"
    assert cells["% of peak"]["text"] == "50"
    assert cells["peak mem [MiB]"]["text"] == "2"
    assert cells["within tol."]["text"] == "yes"
    assert cells["samples [n]"]["text"] == "7" and "detail" in cells["samples [n]"]["cls"]
