"""The store's schema: the tables, the columns of a run and of its samples (a result's come
from the registry, `convbench.store.columns`), the result statuses, and the schema version a
store records.

A result's ``status`` is one of `STATUSES`: ``ok``; ``unsupported`` (the backend's reason in
``reason``); ``oom``; ``error``; ``timeout``.
"""

from __future__ import annotations

from pathlib import Path

from convbench.store.columns import STORED

STATUSES = ("ok", "unsupported", "oom", "error", "timeout")
#: 1: version 1's columns. 2: adds saved_bytes (the training passes), dispatch and
#: options_json (what each plan chose), the tunes table (`convbench tune`), and the columns
#: of disturbance-aware and CUDA timing. 3: adds layout and out_layout (the layouts axis; the
#: rows of an older store read as contiguous). 4: adds a tune's per-layer plan (``plan_json``;
#: null for older tunes). `Store` upgrades an older store when it opens it.
SCHEMA_VERSION = 4
DEFAULT_DB = Path("results") / "convbench.sqlite"

#: Every stored result column as (name, SQL type), from the registry (`convbench.store.columns`).
RESULT_COLUMNS: tuple[tuple[str, str], ...] = tuple((c.name, c.sql) for c in STORED)
RESULT_FIELDS = tuple(name for name, _ in RESULT_COLUMNS)

RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT PRIMARY KEY"),
    ("suite", "TEXT"),
    ("suite_path", "TEXT"),
    ("command", "TEXT"),
    ("config_json", "TEXT"),
    ("env_json", "TEXT"),
    ("peaks_json", "TEXT"),
    ("status", "TEXT"),
    ("created_at", "REAL"),
    ("finished_at", "REAL"),
    ("schema_version", "INTEGER"),
    ("owner_json", "TEXT"),  # the process that runs it (`convbench.store.liveness`)
    ("heartbeat_at", "REAL"),  # when its last result was stored
)
RUN_FIELDS = tuple(name for name, _ in RUN_COLUMNS)

# Raw samples, one row per result: the per-call times the statistics use, the round each was
# taken in (interleaved measurement), and the disturbed ones kept apart (all JSON arrays).
SAMPLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT NOT NULL"),
    ("result_key", "TEXT NOT NULL"),
    ("samples_ms", "TEXT NOT NULL"),
    ("rounds_json", "TEXT"),
    ("discarded_json", "TEXT"),
)
SAMPLE_FIELDS = tuple(name for name, _ in SAMPLE_COLUMNS)

# One row per `convbench tune`: the model, its decisions, the end-to-end comparisons and the
# per-layer plan (JSON), as the decisions file holds them.
TUNE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tune_id", "TEXT PRIMARY KEY"),
    ("run_id", "TEXT NOT NULL"),
    ("model", "TEXT"),
    ("input_shape_json", "TEXT"),
    ("decisions_path", "TEXT"),
    ("decisions_json", "TEXT"),
    ("end_to_end_json", "TEXT"),
    ("created_at", "REAL"),
    ("plan_json", "TEXT"),
)
TUNE_FIELDS = tuple(name for name, _ in TUNE_COLUMNS)


def ddl() -> str:
    results = ",\n    ".join(f"{n} {t}" for n, t in RESULT_COLUMNS)
    runs = ",\n    ".join(f"{n} {t}" for n, t in RUN_COLUMNS)
    samples = ",\n    ".join(f"{n} {t}" for n, t in SAMPLE_COLUMNS)
    tunes = ",\n    ".join(f"{n} {t}" for n, t in TUNE_COLUMNS)
    return f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    {runs}
);
CREATE TABLE IF NOT EXISTS results (
    {results},
    PRIMARY KEY (run_id, result_key)
);
CREATE TABLE IF NOT EXISTS samples (
    {samples},
    PRIMARY KEY (run_id, result_key)
);
CREATE TABLE IF NOT EXISTS tunes (
    {tunes}
);
"""
