"""The results store: SQLite (stdlib `sqlite3`) in WAL mode.

One file holds many runs. A run row records the environment once (versions, devices, flags,
git commit, command line); every finished result is written and committed on its own, so a
crash or ``kill -9`` loses at most the case in flight, and `--resume` can finish a run without
redoing or duplicating anything: ``(run_id, result_key)`` is the primary key.

Raw timing samples are kept (as JSON arrays of per-call milliseconds) beside the summary
columns, so statistics can always be recomputed from what was measured.

The store carries a schema version. A store written by an older convbench is upgraded when
opened (versions only add columns); one from a newer convbench is refused with a clear
message rather than silently misread.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from convbench.errors import UserError
from convbench.store import liveness
from convbench.store.schema import (
    DEFAULT_DB,
    RESULT_COLUMNS,
    RESULT_FIELDS,
    RUN_COLUMNS,
    RUN_FIELDS,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    TUNE_COLUMNS,
    TUNE_FIELDS,
    ddl,
)

#: Stored readings `Store.usual_pace_us` needs before it speaks for the machine.
MIN_PACE_HISTORY = 30


class Store:
    """An open results database. ``path=None`` (or ``":memory:"``) keeps it in memory."""

    def __init__(self, path: str | Path | None = DEFAULT_DB):
        self.path = ":memory:" if path in (None, ":memory:") else Path(path)
        #: This object made the file (it did not exist, or was empty): see `remove`.
        self.created = False
        if self.path != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.created = not self.path.exists() or self.path.stat().st_size == 0
        try:
            # One connection, shared by the sweep's per-device threads under `lock`.
            self.conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
            self.lock = threading.RLock()
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash can
            # lose the last commits.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._check_version()
            self.conn.executescript(ddl())
            self.conn.commit()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a convbench results database ({exc})") from None

    @classmethod
    def open_existing(cls, path: str | Path) -> Store:
        """Open a store that must already exist: a missing or empty file is a UserError, and
        nothing is written to it (reading commands never create a store)."""
        if str(path) == ":memory:":
            return cls(path)
        p = Path(path)
        if not p.exists():
            raise UserError(f"{p}: no such results database")
        if p.is_dir():
            raise UserError(f"{p}: is a directory, not a results database")
        if p.stat().st_size == 0:
            raise UserError(f"{p}: empty file, not a convbench results database")
        return cls(p)

    def remove(self) -> None:
        """Delete the (closed) store's files: the database and its WAL side files."""
        if self.path == ":memory:":
            return
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _check_version(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        if "meta" not in tables:
            if tables:
                raise UserError(f"{self.path}: not a convbench results database")
            self.conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            return
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version is not None and 1 <= version <= SCHEMA_VERSION:
            self._upgrade(version)  # also a store of this version missing a column
        elif version != SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: results schema version {version}, this convbench reads "
                f"versions 1 to {SCHEMA_VERSION}; use a newer convbench or a new --db"
            )

    def _upgrade(self, version: int) -> None:
        """Bring an older store up to `SCHEMA_VERSION`: versions only ever add columns, so
        the missing ones are added (NULL in the rows already stored) — nothing is lost."""
        tables = (("results", RESULT_COLUMNS), ("runs", RUN_COLUMNS), ("samples", SAMPLE_COLUMNS),
                  ("tunes", TUNE_COLUMNS))  # fmt: skip
        present = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        changed = version < SCHEMA_VERSION
        for table, columns in tables:
            if table not in present:
                continue  # created whole by the DDL that follows
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            for name, sql_type in columns:
                if name not in have:
                    plain = sql_type.replace(" NOT NULL", "")
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {plain}")
                    changed = True
        if changed:
            self.conn.execute(
                "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
            )
            self.conn.commit()

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    # -- writing -------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        *,
        suite: str,
        suite_path: str | None,
        command: str,
        config: Mapping,
        env: Mapping,
    ) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs (run_id, suite, suite_path, command, config_json, env_json,"
                " status, created_at, schema_version, owner_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    suite,
                    suite_path,
                    command,
                    json.dumps(dict(config)),
                    json.dumps(dict(env), default=str),
                    "running",
                    time.time(),
                    SCHEMA_VERSION,
                    json.dumps(liveness.this_process()),
                ),
            )

    def claim_run(self, run_id: str) -> None:
        """Resume ``run_id`` in this process: refused while its owner still runs it."""
        record = self.run(run_id)
        if record["status"] == "running" and liveness.owner_alive(record["owner"]):
            owner = record["owner"]
            raise UserError(
                f"{self.path}: run {run_id!r} is still running (pid {owner['pid']} on "
                f"{owner['host']}); stop it first"
            )
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET status='running', finished_at=NULL, owner_json=? WHERE run_id=?",
                (json.dumps(liveness.this_process()), run_id),
            )

    def set_run_status(self, run_id: str, status: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET status=?, finished_at=? WHERE run_id=?",
                (status, time.time(), run_id),
            )

    def set_run_peaks(self, run_id: str, peaks: Mapping) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET peaks_json=? WHERE run_id=?", (json.dumps(dict(peaks)), run_id)
            )

    def add_result(self, row: Mapping, samples: object = None, *, replace: bool = False) -> None:
        """Insert one result (and its raw samples) and commit at once.

        ``samples``: None, a sequence of per-call ms, or a `Samples`-like object with
        ``ms``, ``rounds`` and ``discarded_ms``. Unknown row keys are a bug and raise; missing
        columns are stored as NULL. A second result with the same ``(run_id, result_key)``
        raises `sqlite3.IntegrityError`, unless ``replace``: then the stored result and its
        samples give way to the new ones, in the same transaction.
        """
        unknown = set(row) - set(RESULT_FIELDS)
        if unknown:
            raise KeyError(f"unknown result fields: {sorted(unknown)}")
        names = [n for n in RESULT_FIELDS if n in row]
        with self.lock, self.conn:
            if replace:
                for table in ("results", "samples"):
                    self.conn.execute(
                        f"DELETE FROM {table} WHERE run_id=? AND result_key=?",
                        (row["run_id"], row["result_key"]),
                    )
            self.conn.execute(
                f"INSERT INTO results ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [row[n] for n in names],
            )
            self.conn.execute(
                "UPDATE runs SET heartbeat_at=? WHERE run_id=?", (time.time(), row["run_id"])
            )
            if samples is not None:
                ms = getattr(samples, "ms", samples)
                rounds = getattr(samples, "rounds", None)
                discarded = getattr(samples, "discarded_ms", None)
                self.conn.execute(
                    "INSERT INTO samples (run_id, result_key, samples_ms, rounds_json,"
                    " discarded_json) VALUES (?,?,?,?,?)",
                    (
                        row["run_id"],
                        row["result_key"],
                        json.dumps([float(s) for s in ms]),
                        None if rounds is None else json.dumps([int(r) for r in rounds]),
                        None if discarded is None else json.dumps([float(s) for s in discarded]),
                    ),
                )

    # -- reading -------------------------------------------------------------------------
    def run(self, run_id: str) -> dict:
        cur = self.conn.execute(
            f"SELECT {', '.join(RUN_FIELDS)} FROM runs WHERE run_id=?", (run_id,)
        )
        row = cur.fetchone()
        if row is None:
            known = [r[0] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY created_at")]
            hint = f"; runs here: {', '.join(known[-5:])}" if known else "; it holds no runs"
            raise UserError(f"{self.path}: no run {run_id!r}{hint}")
        record = dict(zip(RUN_FIELDS, row, strict=True))
        for key in ("config", "env", "peaks", "owner"):
            blob = record.pop(f"{key}_json")
            record[key] = json.loads(blob) if blob else {}
        record["status"] = liveness.effective_status(record["status"], record["owner"])
        return record

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT run_id FROM runs ORDER BY created_at")]

    def latest_run_id(self) -> str:
        ids = self.run_ids()
        if not ids:
            raise UserError(f"{self.path}: holds no runs yet; start one with `convbench run`")
        return ids[-1]

    def finished_keys(self, run_id: str) -> set[str]:
        with self.lock:
            cur = self.conn.execute("SELECT result_key FROM results WHERE run_id=?", (run_id,))
            return {r[0] for r in cur}

    def usual_pace_us(self, node: str, threads: int, exclude_run: str | None = None):
        """The median reference-kernel reading (`convbench.measure.pace`) of the stored CPU
        results measured on ``node`` with ``threads`` intra-op threads (other runs than
        ``exclude_run``): how fast this machine usually runs it. None with fewer than
        `MIN_PACE_HISTORY` readings."""
        with self.lock:
            values = [
                v
                for (v,) in self.conn.execute(
                    "SELECT pace_us FROM results WHERE node=? AND torch_threads=? "
                    "AND pace_us > 0 AND run_id IS NOT ?",
                    (node, threads, exclude_run),
                )
            ]
        return statistics.median(values) if len(values) >= MIN_PACE_HISTORY else None

    def result_rows(self, run_id: str | None = None) -> list[dict]:
        sql = f"SELECT {', '.join(RESULT_FIELDS)} FROM results"
        params: tuple = ()
        if run_id is not None:
            sql += " WHERE run_id=?"
            params = (run_id,)
        sql += " ORDER BY started_at, rowid"
        return [dict(zip(RESULT_FIELDS, r, strict=True)) for r in self.conn.execute(sql, params)]

    def samples(self, run_id: str, result_key: str) -> list[float]:
        row = self.conn.execute(
            "SELECT samples_ms FROM samples WHERE run_id=? AND result_key=?", (run_id, result_key)
        ).fetchone()
        return json.loads(row[0]) if row else []

    def all_samples(self, run_id: str | None = None) -> dict[tuple[str, str], dict]:
        """(run, result key) -> {"samples_ms", "rounds", "discarded_ms"} (lists; None where a
        version-1 store kept none)."""
        sql = "SELECT run_id, result_key, samples_ms, rounds_json, discarded_json FROM samples"
        params: tuple = ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id=?", (run_id,)
        out = {}
        for r, k, s, rounds, discarded in self.conn.execute(sql, params):
            out[(r, k)] = {
                "samples_ms": json.loads(s),
                "rounds": json.loads(rounds) if rounds else None,
                "discarded_ms": json.loads(discarded) if discarded else None,
            }
        return out

    # -- tunes ---------------------------------------------------------------------------
    def add_tune(self, tune_id: str, run_id: str, *, model: str, input_shape, decisions_path,
                 decisions: list, end_to_end: list, plan: dict | None = None) -> None:  # fmt: skip
        """Record a `convbench tune` (replacing an earlier record of the same id)."""
        path = str(decisions_path) if decisions_path else None
        values = (tune_id, run_id, model, json.dumps(list(input_shape)), path,
                  json.dumps(decisions), json.dumps(end_to_end), time.time(),
                  json.dumps(plan) if plan else None)  # fmt: skip
        with self.lock, self.conn:
            self.conn.execute(
                f"INSERT OR REPLACE INTO tunes ({', '.join(TUNE_FIELDS)}) "
                f"VALUES ({', '.join('?' * len(TUNE_FIELDS))})",
                values,
            )

    def tunes(self, run_id: str | None = None) -> list[dict]:
        """The tune records (of one run), oldest first."""
        sql = f"SELECT {', '.join(TUNE_FIELDS)} FROM tunes"
        params: tuple = ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id=?", (run_id,)
        records = []
        for row in self.conn.execute(sql + " ORDER BY created_at", params):
            tune_id, run, model, shape, path, decisions, e2e, created, plan = row
            records.append(
                dict(tune_id=tune_id, run_id=run, model=model, input_shape=json.loads(shape),
                     decisions_path=path, decisions=json.loads(decisions),
                     end_to_end=json.loads(e2e), created_at=created,
                     plan=json.loads(plan) if plan else None)
            )  # fmt: skip
        return records

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
