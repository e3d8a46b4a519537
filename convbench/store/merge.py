"""`convbench merge OUT IN...`: combine result stores (e.g. the shards of a job array).

Runs are kept with their environments; results and raw samples are deduplicated by their key
``(run_id, result_key)`` — the first store listed wins. A store of another schema version is
refused with a message naming it, before anything is written.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from convbench.errors import UserError
from convbench.store.schema import RESULT_FIELDS, RUN_FIELDS, SAMPLE_FIELDS, SCHEMA_VERSION
from convbench.store.sqlite import Store


def _version(path: Path) -> int | None:
    if not path.exists():
        raise UserError(f"{path}: no such results database")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path}: not a convbench results database ({exc})") from None
    return int(row[0]) if row else None


def merge(out: str | Path, inputs: list[str | Path]) -> dict[str, int]:
    """Merge ``inputs`` into ``out`` (created if missing). Returns counts of what was added."""
    out, paths = Path(out), [Path(p) for p in inputs]
    if not paths:
        raise UserError("merge: give at least one input store")
    for path in paths:
        if path.resolve() == out.resolve():
            raise UserError(f"{path}: an input cannot also be the output")
        version = _version(path)
        if version != SCHEMA_VERSION:
            hint = (
                f"upgrade it first by opening it with this convbench (convbench runs --db {path})"
                if version is not None and version < SCHEMA_VERSION
                else "merge stores written by matching convbench versions"
            )
            raise UserError(
                f"{path}: results schema version {version}, but {out} uses version "
                f"{SCHEMA_VERSION}; {hint}"
            )
    added = {"runs": 0, "results": 0, "samples": 0, "duplicates": 0}
    store = Store(out)
    conn = store.conn
    try:
        for path in paths:
            conn.execute("ATTACH DATABASE ? AS src", (str(path),))
            try:
                with conn:
                    before = conn.total_changes
                    runs = ", ".join(RUN_FIELDS)
                    conn.execute(f"INSERT OR IGNORE INTO runs ({runs}) SELECT {runs} FROM src.runs")
                    added["runs"] += conn.total_changes - before
                    n_src = conn.execute("SELECT COUNT(*) FROM src.results").fetchone()[0]
                    before = conn.total_changes
                    cols = ", ".join(RESULT_FIELDS)
                    conn.execute(
                        f"INSERT OR IGNORE INTO results ({cols}) SELECT {cols} FROM src.results"
                    )
                    new = conn.total_changes - before
                    added["results"] += new
                    added["duplicates"] += n_src - new
                    before = conn.total_changes
                    cols = ", ".join(SAMPLE_FIELDS)
                    conn.execute(
                        f"INSERT OR IGNORE INTO samples ({cols}) SELECT {cols} FROM src.samples"
                    )
                    added["samples"] += conn.total_changes - before
            finally:
                conn.execute("DETACH DATABASE src")
    finally:
        store.close()
    return added
