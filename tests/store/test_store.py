"""The SQLite store: one commit per result, no duplicates, schema version, DataFrame load."""

from __future__ import annotations

import sqlite3

import pytest

from convbench import results
from convbench.errors import UserError
from convbench.store import SCHEMA_VERSION, Store


def _row(key, status="ok", **extra):
    return {
        "run_id": "r1",
        "result_key": key,
        "status": status,
        "backend": "naive",
        "case_name": "c",
        "median_ms": 1.5,
        **extra,
    }


def test_roundtrip_and_samples(tmp_path):
    db = tmp_path / "x.sqlite"
    with Store(db) as store:
        store.create_run(
            "r1",
            suite="s",
            suite_path=None,
            command="convbench run s",
            config={"a": 1},
            env={"torch": "2.13"},
        )
        store.add_result(_row("k1"), [1.0, 2.0, 1.5])
        store.add_result(_row("k2", status="unsupported", reason="nope", median_ms=None))
        assert store.finished_keys("r1") == {"k1", "k2"}
        assert store.samples("r1", "k1") == [1.0, 2.0, 1.5]
        assert store.run("r1")["env"] == {"torch": "2.13"}
    # a second connection (another process would do the same) sees every committed row
    df = results.load(db, "r1", samples=True)
    assert list(df.result_key) == ["k1", "k2"]
    assert df.loc[0, "samples_ms"] == [1.0, 2.0, 1.5]
    assert {
        "run_id",
        "suite",
        "case",
        "backend",
        "status",
        "reason",
        "median_ms",
        "iqr_ms",
        "ci_low_ms",
        "ci_high_ms",
        "n_samples",
        "gflops",
        "peak_mem_bytes",
        "max_abs_err",
        "rel_err",
        "gpu_util_pct",
        "power_w",
        "energy_j",
    } <= set(df.columns)


def test_duplicate_result_is_refused(tmp_path):
    with Store(tmp_path / "x.sqlite") as store:
        store.create_run("r1", suite="s", suite_path=None, command="", config={}, env={})
        store.add_result(_row("k1"))
        with pytest.raises(sqlite3.IntegrityError):
            store.add_result(_row("k1"))


def test_unknown_field_is_a_bug(tmp_path):
    with Store(None) as store, pytest.raises(KeyError, match="bogus"):
        store.add_result(_row("k", bogus=1))


def test_wal_mode_and_schema_version(tmp_path):
    db = tmp_path / "x.sqlite"
    Store(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    conn.execute("UPDATE meta SET value='999'")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="schema version 999"):
        Store(db)


@pytest.mark.parametrize("version", ["1", str(SCHEMA_VERSION)])
def test_a_store_missing_columns_is_upgraded_keeping_its_rows(tmp_path, version):
    """A version-1 store, or one written before a column of this version was added, gains
    the missing columns (NULL in the old rows) when opened; its results stay readable."""
    db = tmp_path / "old.sqlite"
    with Store(db) as store:
        store.create_run("r1", suite="s", suite_path=None, command="", config={}, env={})
        store.add_result(_row("k1"))
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE runs DROP COLUMN owner_json")
    conn.execute("ALTER TABLE results DROP COLUMN timing_note")
    conn.execute("UPDATE meta SET value=?", (version,))
    conn.commit()
    conn.close()
    with Store.open_existing(db) as store:
        assert store.run("r1")["run_id"] == "r1"
        assert [r["result_key"] for r in store.result_rows("r1")] == ["k1"]
    conn = sqlite3.connect(db)
    assert "owner_json" in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert "timing_note" in {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    assert conn.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)


def test_a_version_3_tune_gains_its_plan_column_and_reads_without_a_plan(tmp_path):
    db = tmp_path / "v3.sqlite"
    record = dict(model="m:f", input_shape=(1, 3, 8, 8), decisions_path=None, decisions=[],
                  end_to_end=[])  # fmt: skip
    with Store(db) as store:
        store.add_tune("t1", "r1", **record)
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE tunes DROP COLUMN plan_json")
    conn.execute("UPDATE meta SET value='3'")
    conn.commit()
    conn.close()
    with Store.open_existing(db) as store:
        assert [(t["tune_id"], t["plan"]) for t in store.tunes()] == [("t1", None)]
        store.add_tune("t2", "r1", **record, plan={"layers": [], "predicted_ms": 1.5})
        assert store.tunes()[-1]["plan"] == {"layers": [], "predicted_ms": 1.5}


def test_not_a_store(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_text("this is not sqlite")
    with pytest.raises(UserError, match="not a convbench results database"):
        Store(bad)


def test_missing_run_names_known_runs(tmp_path):
    with Store(tmp_path / "x.sqlite") as store:
        store.create_run("r1", suite="s", suite_path=None, command="", config={}, env={})
        with pytest.raises(UserError, match="no run 'zz'.*r1"):
            store.run("zz")


def test_export_csv_and_parquet(tmp_path):
    db = tmp_path / "x.sqlite"
    with Store(db) as store:
        store.create_run("r1", suite="s", suite_path=None, command="", config={}, env={})
        store.add_result(_row("k1"))
    import pandas as pd

    csv = results.export(db, tmp_path / "out.csv")
    assert pd.read_csv(csv).loc[0, "median_ms"] == 1.5
    pq = results.export(db, tmp_path / "out.parquet")
    assert pd.read_parquet(pq).loc[0, "result_key"] == "k1"
    with pytest.raises(UserError, match="csv or parquet"):
        results.export(db, tmp_path / "out.xlsx")
