"""The write-ahead job ledger: the source of truth for what was submitted to Oxylabs.

Oxylabs has no "list my jobs" endpoint (docs/oxylabs.md#what-scrapesync-infers): a job id that
is not written down is lost, and a query whose submission is not written down may be paid for
twice. So every batch goes through durable states before and after its one POST:

    planned   intent recorded (fingerprints, batch id); nothing sent yet: safe to send
    sending   recorded just before the POST: from here the outcome is unknown until the answer
              (job ids) is recorded, or a callback of one of its jobs arrives
    submitted the answer's job ids are recorded (one transaction for the whole batch)
    rejected  Oxylabs refused the batch (4xx other than 429): nothing was created
    unknown   the POST failed in a way that may have created jobs (5xx, timeout, reset), or a
              process died between `sending` and `submitted`; never resent unless forced
    abandoned the user dropped an unknown batch (`scrapesync oxylabs resolve --abandon`)

Where: in the destination (schema `oxylabs_ledger`, see `sources/common/statedb.py`), the one
store every worker shares, so a fresh worker continues where the last one stopped: DuckDB's
file or PostgreSQL, each state change committed (durable) before the step that depends on it.
`journal_path` keeps it in a local SQLite file instead (WAL, `synchronous=FULL`), for a
destination without SQL; then that file is the only record of the job ids.

Tables: `meta` (the change counter), `batches`, `jobs` (one row per fingerprint and attempt),
`callbacks` (one row per job id, written by the callback intake, possibly another process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pendulum

from scrapesync.sources.common.statedb import StateDB

LEDGER_SCHEMA = "oxylabs_ledger"
TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO meta (name, value) VALUES ('version', 0) ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, state TEXT NOT NULL,"
    " kind TEXT NOT NULL, params TEXT NOT NULL, size BIGINT NOT NULL, created_at TEXT NOT NULL,"
    " sent_at TEXT, answered_at TEXT, note TEXT, version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jobs (fingerprint TEXT NOT NULL, attempt BIGINT NOT NULL,"
    " batch_id TEXT NOT NULL, position BIGINT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,"
    " params TEXT NOT NULL, origin TEXT NOT NULL DEFAULT 'submit', job_id TEXT,"
    " status TEXT NOT NULL, fault_code BIGINT, fault_reason TEXT, result_pages BIGINT,"
    " submitted_at TEXT, finished_at TEXT, collected_at TEXT, collect_load_id TEXT,"
    " callback_at TEXT, resubmitted_as TEXT, version BIGINT NOT NULL,"
    " PRIMARY KEY (fingerprint, attempt))",
    "CREATE TABLE IF NOT EXISTS callbacks (job_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " tag TEXT, body TEXT NOT NULL, received_at TEXT NOT NULL, applied BIGINT NOT NULL DEFAULT 0)",
)
# secondary indexes, where updates keep them cheap. DuckDB turns the update of an indexed
# column into delete + insert and then reports false duplicates (measured: `job_id` set on one
# row of a batch answer failed as a duplicate key); it scans these tables fast, so it gets
# only the primary keys above, and job ids stay unique by construction there (Oxylabs issues
# them; Scheduler jobs are inserted only when their id is not known yet)
INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_job_id ON jobs (job_id)",
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status)",
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, position)",
    "CREATE INDEX IF NOT EXISTS jobs_version ON jobs (version)",
)
# Job statuses of the journal: `intent` (batch not answered yet), Oxylabs' own `pending`,
# `done`, `faulted`, plus `expired` (results gone, 404) and `resubmitted` (a faulted job that
# got a new attempt).
OPEN_STATUSES = ("pending", "done")
JOB_COLUMNS = (
    "fingerprint",
    "attempt",
    "batch_id",
    "kind",
    "value",
    "params",
    "origin",
    "job_id",
    "status",
    "fault_code",
    "fault_reason",
    "result_pages",
    "submitted_at",
    "finished_at",
    "collected_at",
    "collect_load_id",
    "callback_at",
    "resubmitted_as",
    "version",
)
# bound parameters per statement (SQLite's limit is the lowest of the three databases)
CHUNK = 900


def fingerprint(kind: str, value: str, params: dict[str, Any]) -> str:
    """The identity of one job request: sha256 of (query|url, value, canonical params)."""
    canonical = orjson.dumps([kind, value, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def now() -> str:
    return pendulum.now("UTC").to_iso8601_string()


def default_ledger() -> StateDB:
    """The ledger in `[scrapesync] destination` (CLI actions, the callback intake); a sync
    binds its journal to its own pipeline's destination instead (`Journal.use_pipeline`)."""
    return StateDB.from_config(LEDGER_SCHEMA)


def open_store(
    journal_path: str | Path | None = None, ledger: StateDB | None = None
) -> StateDB | Callable[[], StateDB]:
    """Where the ledger is: `ledger`, else the local file `journal_path`, else (resolved on
    first use) `default_ledger()`."""
    if ledger is not None:
        return ledger.with_schema(LEDGER_SCHEMA) if ledger.schema != LEDGER_SCHEMA else ledger
    if journal_path:
        return StateDB.sqlite(journal_path)
    return default_ledger


class Journal:
    """The ledger in one `StateDB`, safe to share between threads and processes."""

    def __init__(self, store: StateDB | Callable[[], StateDB] | str | Path | None = None) -> None:
        if isinstance(store, (str, Path)) or store is None:
            store = open_store(store)
        self._store = store
        # an explicit store (a ledger, a local file) is never replaced by a pipeline's
        self.explicit = isinstance(store, StateDB)
        self._tx: Any = None

    def use_pipeline(self, pipeline: Any) -> None:
        """Keep the ledger in `pipeline`'s destination, unless a store was given explicitly."""
        if not self.explicit:
            self._store = StateDB.for_pipeline(pipeline, LEDGER_SCHEMA)
            self.explicit = True

    @property
    def db(self) -> StateDB:
        if not isinstance(self._store, StateDB):
            self._store = self._store()
        if self._store.kind != "duckdb":
            self._store.ensure("oxylabs_ledger", (*TABLES, *INDEXES))
        else:
            self._store.ensure("oxylabs_ledger", TABLES)
        return self._store

    @property
    def location(self) -> str:
        """Where the ledger is, printable (never a password)."""
        return self.db.location

    @property
    def path(self) -> str:
        """`location` (the name messages used when the ledger was always a local file)."""
        return self.location

    def close(self) -> None:
        """Release the database file now (DuckDB: other processes may open it)."""
        if isinstance(self._store, StateDB):
            self._store.release()

    @contextmanager
    def write(self) -> Iterator[int]:
        """One durable write transaction; yields the version number its rows get."""
        with self.db.transaction() as tx:
            previous, self._tx = self._tx, tx
            try:
                rows = tx.execute(
                    "UPDATE meta SET value = value + 1 WHERE name = 'version' RETURNING value"
                )
                yield int(rows[0]["value"])
            finally:
                self._tx = previous

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if self._tx is not None:
            return self._tx.execute(sql, params)
        try:
            return self.db.query(sql, params)
        finally:
            # a read ends a unit of work (a status, a check between syncs): the DuckDB file is
            # free at once; bursts of writes keep sharing one connection
            self.db.release()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one statement inside an open `write()` transaction."""
        return self._tx.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._tx.executemany(sql, rows)

    # -- submission -----------------------------------------------------------------------
    def latest_attempts(self, fingerprints: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The newest attempt of each known fingerprint (with its batch state)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(fingerprints), CHUNK):
            chunk = fingerprints[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.query(
                f"SELECT j.*, b.state AS batch_state FROM jobs j JOIN batches b USING (batch_id)"
                f" WHERE j.fingerprint IN ({marks})"
                " AND j.attempt = (SELECT max(attempt) FROM jobs k"
                "                  WHERE k.fingerprint = j.fingerprint)",
                chunk,
            )
            found.update({row["fingerprint"]: row for row in rows})
        return found

    def plan_batch(
        self,
        batch_id: str,
        kind: str,
        params: dict[str, Any],
        items: Sequence[tuple[str, str, int]],
        origin: str = "submit",
    ) -> None:
        """Record the intent to submit `items` (fingerprint, value, attempt) as one batch."""
        encoded = orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()
        with self.write() as version:
            self.execute(
                "INSERT INTO batches (batch_id, state, kind, params, size, created_at, version)"
                " VALUES (?, 'planned', ?, ?, ?, ?, ?)",
                (batch_id, kind, encoded, len(items), now(), version),
            )
            self.executemany(
                "INSERT INTO jobs (fingerprint, attempt, batch_id, position, kind, value, params,"
                " origin, status, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'intent', ?)",
                [
                    (fp, attempt, batch_id, pos, kind, value, encoded, origin, version)
                    for pos, (fp, value, attempt) in enumerate(items)
                ],
            )

    def set_batch_state(self, batch_id: str, state: str, note: str | None = None) -> None:
        stamp = "sent_at" if state == "sending" else "answered_at"
        with self.write() as version:
            self.execute(
                f"UPDATE batches SET state = ?, note = coalesce(?, note), {stamp} = ?,"
                " version = ? WHERE batch_id = ?",
                (state, note, now(), version, batch_id),
            )
            if state in ("rejected", "abandoned"):
                self.execute(
                    "UPDATE jobs SET status = ?, version = ? WHERE batch_id = ? AND job_id IS NULL",
                    (state, version, batch_id),
                )

    def record_answer(
        self, batch_id: str, assignments: Sequence[tuple[int, dict[str, Any]]]
    ) -> None:
        """Store the job ids of a batch answer: (position, job object) pairs, one transaction."""
        stamp = now()
        with self.write() as version:
            self.executemany(
                "UPDATE jobs SET job_id = ?, status = ?, submitted_at = ?, version = ?"
                " WHERE batch_id = ? AND position = ?",
                [
                    (str(job["id"]), job.get("status") or "pending", stamp, version, batch_id, pos)
                    for pos, job in assignments
                ],
            )
            self.execute(
                "UPDATE batches SET state = 'submitted', answered_at = ?, version = ?"
                " WHERE batch_id = ?",
                (stamp, version, batch_id),
            )

    def batches(self, states: Sequence[str]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        return self.query(
            f"SELECT * FROM batches WHERE state IN ({marks}) ORDER BY created_at, batch_id", states
        )

    def batch_jobs(self, batch_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM jobs WHERE batch_id = ? ORDER BY position", (batch_id,))

    # -- collection -----------------------------------------------------------------------
    def open_jobs(self) -> list[dict[str, Any]]:
        """Jobs to poll or collect: callback-notified ones first, then oldest first."""
        return self.query(
            "SELECT * FROM jobs WHERE job_id IS NOT NULL AND collected_at IS NULL"
            " AND status IN ('pending', 'done')"
            " ORDER BY callback_at IS NULL, submitted_at, job_id"
        )

    def update_jobs(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Apply (job_id, {column: value}) changes in one transaction."""
        if not changes:
            return
        with self.write() as version:
            for job_id, fields in changes:
                names = ", ".join(f"{name} = ?" for name in fields)
                self.execute(
                    f"UPDATE jobs SET {names}, version = ? WHERE job_id = ?",
                    (*fields.values(), version, job_id),
                )

    def mark_collected(self, load_ids: Sequence[str]) -> int:
        """Jobs whose results are in a load the destination confirmed: never fetched again.

        Not a ledger change seen in the warehouse (its `jobs` row was loaded together with the
        results), so the version is not bumped.
        """
        total = 0
        for start in range(0, len(load_ids), CHUNK):
            chunk = load_ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            with self.db.transaction() as tx:
                rows = tx.execute(
                    f"UPDATE jobs SET collected_at = ? WHERE collected_at IS NULL"
                    f" AND collect_load_id IN ({marks}) RETURNING job_id",
                    (now(), *chunk),
                )
                total += len(rows)
        return total

    def uncollected_load_ids(self) -> list[str]:
        rows = self.query(
            "SELECT DISTINCT collect_load_id FROM jobs"
            " WHERE collected_at IS NULL AND collect_load_id IS NOT NULL"
        )
        return [row["collect_load_id"] for row in rows]

    def changed_since(self, version: int) -> list[dict[str, Any]]:
        columns = ", ".join(JOB_COLUMNS)
        return self.query(
            f"SELECT {columns} FROM jobs WHERE version > ? AND job_id IS NOT NULL"
            " ORDER BY version, job_id",
            (version,),
        )

    def add_external_jobs(self, rows: Sequence[tuple[str, str, int, str]]) -> int:
        """Register jobs created outside scrapesync (Scheduler runs): (job_id, batch, position
        in the batch, status). Known job ids are left alone; returns how many were new."""
        if not rows:
            return 0
        with self.write() as version:
            known: set[str] = set()
            ids = list(dict.fromkeys(job_id for job_id, _, _, _ in rows))
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                marks = ",".join("?" * len(chunk))
                found = self.execute(f"SELECT job_id FROM jobs WHERE job_id IN ({marks})", chunk)
                known.update(row["job_id"] for row in found)
            fresh = list({r[0]: r for r in rows if r[0] not in known}.values())
            stamp = now()
            self.executemany(
                "INSERT INTO jobs (fingerprint, attempt, batch_id, position, kind, value, params,"
                " origin, job_id, status, submitted_at, version)"
                " VALUES (?, 0, ?, ?, 'scheduled', '', '{}', 'scheduler', ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [
                    (f"job:{job_id}", batch_id, position, job_id, status, stamp, version)
                    for job_id, batch_id, position, status in fresh
                ],
            )
            self.executemany(
                "INSERT INTO batches (batch_id, state, kind, params, size, created_at, version)"
                " VALUES (?, 'submitted', 'scheduled', '{}', 0, ?, ?) ON CONFLICT DO NOTHING",
                [(batch_id, stamp, version) for batch_id in dict.fromkeys(r[1] for r in fresh)],
            )
        return len(fresh)

    # -- callbacks ------------------------------------------------------------------------
    def store_callback(self, job: dict[str, Any], body: bytes) -> bool:
        """Keep one callback durably; a duplicate of a known job id changes nothing.

        Written by the callback intake, maybe while a sync holds the DuckDB file: then it waits
        briefly and else goes to the local spool (`StateDB.insert_or_spool`).
        """
        row = {
            "job_id": str(job["id"]),
            "status": str(job.get("status") or ""),
            "tag": str(job.get("client_notes") or ""),
            "body": body.decode("utf-8", errors="replace"),
            "received_at": now(),
        }
        if not isinstance(self._store, StateDB):
            self._store = self._store()
        store = self._store
        # the intake may be the ledger's first writer: its DDL goes with the row
        return store.insert_or_spool("callbacks", row, TABLES)

    def unapplied_callbacks(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM callbacks WHERE applied = 0 ORDER BY received_at")

    def apply_callbacks(self, job_ids: Sequence[str]) -> None:
        """Flag the callbacks' jobs for collection first (and the callbacks as applied)."""
        if not job_ids:
            return
        stamp = now()
        with self.write() as version:
            self.executemany(
                "UPDATE jobs SET callback_at = coalesce(callback_at, ?), version = ?"
                " WHERE job_id = ?",
                [(stamp, version, job_id) for job_id in job_ids],
            )
            self.executemany(
                "UPDATE callbacks SET applied = 1 WHERE job_id = ?", [(j,) for j in job_ids]
            )
