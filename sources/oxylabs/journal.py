"""The local, write-ahead job journal: the source of truth for what was submitted to Oxylabs.

Oxylabs has no "list my jobs" endpoint (docs/oxylabs.md#what-scrapesync-infers): a job id that
is not written down is lost, and a query whose submission is not written down may be paid for
twice. So every batch goes through three durable states before and after its one POST:

    planned   intent recorded (fingerprints, batch id); nothing sent yet: safe to send
    sending   recorded just before the POST: from here the outcome is unknown until the answer
              (job ids) is recorded, or a callback of one of its jobs arrives
    submitted the answer's job ids are recorded (one transaction for the whole batch)
    rejected  Oxylabs refused the batch (4xx other than 429): nothing was created
    unknown   the POST failed in a way that may have created jobs (5xx, timeout, reset), or a
              process died between `sending` and `submitted`; never resent unless forced
    abandoned the user dropped an unknown batch (`scrapesync oxylabs resolve --abandon`)

Why SQLite (WAL, `synchronous=FULL`) and not an fsync'd JSONL file: a batch answer of 5,000
job ids must land all-or-nothing (one transaction), fingerprints are looked up by index on
every submission (12,000 queries in the tests), the callback intake (another process) writes
concurrently with a sync (WAL: one writer, readers never blocked, `busy_timeout`), and
`synchronous=FULL` fsyncs the WAL on every commit, so a committed state survives SIGKILL and
power loss. A JSONL log would need its own compaction, torn-line handling and locking.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
import orjson
import pendulum

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', 0);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, state TEXT NOT NULL, kind TEXT NOT NULL, params TEXT NOT NULL,
    size INTEGER NOT NULL, created_at TEXT NOT NULL, sent_at TEXT, answered_at TEXT,
    note TEXT, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    fingerprint TEXT NOT NULL, attempt INTEGER NOT NULL, batch_id TEXT NOT NULL,
    position INTEGER NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, params TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT 'submit', job_id TEXT UNIQUE, status TEXT NOT NULL,
    fault_code INTEGER, fault_reason TEXT, result_pages INTEGER, submitted_at TEXT,
    finished_at TEXT, collected_at TEXT, collect_load_id TEXT, callback_at TEXT,
    resubmitted_as TEXT, version INTEGER NOT NULL, PRIMARY KEY (fingerprint, attempt));
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, position);
CREATE INDEX IF NOT EXISTS jobs_version ON jobs (version);
CREATE TABLE IF NOT EXISTS callbacks (
    job_id TEXT PRIMARY KEY, status TEXT NOT NULL, tag TEXT, body BLOB NOT NULL,
    received_at TEXT NOT NULL, applied INTEGER NOT NULL DEFAULT 0);
"""
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


def default_path() -> Path:
    """`<dlt data dir>/scrapesync/oxylabs/journal.sqlite` (`DLT_DATA_DIR` moves it)."""
    return Path(dlt.current.run_context().data_dir) / "scrapesync" / "oxylabs" / "journal.sqlite"


def fingerprint(kind: str, value: str, params: dict[str, Any]) -> str:
    """The identity of one job request: sha256 of (query|url, value, canonical params)."""
    canonical = orjson.dumps([kind, value, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def now() -> str:
    return pendulum.now("UTC").to_iso8601_string()


class Journal:
    """One SQLite journal file, safe to share between threads and processes."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def write(self) -> Iterator[int]:
        """One durable write transaction; yields the version number its rows get."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "UPDATE meta SET value = value + 1 WHERE key = 'version' RETURNING value"
                ).fetchone()
                yield int(row[0])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, params).fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement inside an open `write()` transaction."""
        self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    # -- submission -----------------------------------------------------------------------
    def latest_attempts(self, fingerprints: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The newest attempt of each known fingerprint (with its batch state)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(fingerprints), 900):  # SQLite's bound-parameter limit
            chunk = fingerprints[start : start + 900]
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
        with self._lock:
            for start in range(0, len(load_ids), 900):
                chunk = load_ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                with self.write():
                    cursor = self._db.execute(
                        f"UPDATE jobs SET collected_at = ? WHERE collected_at IS NULL"
                        f" AND collect_load_id IN ({marks})",
                        (now(), *chunk),
                    )
                    total += cursor.rowcount
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
        added = 0
        with self.write() as version:
            for job_id, batch_id, position, status in rows:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO jobs (fingerprint, attempt, batch_id, position, kind,"
                    " value, params, origin, job_id, status, submitted_at, version)"
                    " VALUES (?, 0, ?, ?, 'scheduled', '', '{}', 'scheduler', ?, ?, ?, ?)",
                    (f"job:{job_id}", batch_id, position, job_id, status, now(), version),
                )
                added += cursor.rowcount
            self.execute(
                "INSERT OR IGNORE INTO batches (batch_id, state, kind, params, size, created_at,"
                " version) SELECT DISTINCT batch_id, 'submitted', 'scheduled', '{}', 0, ?, ?"
                " FROM jobs WHERE origin = 'scheduler'",
                (now(), version),
            )
        return added

    # -- callbacks ------------------------------------------------------------------------
    def store_callback(self, job: dict[str, Any], body: bytes) -> bool:
        """Keep one callback durably; a duplicate of a known job id changes nothing."""
        job_id = str(job["id"])
        tag = str(job.get("client_notes") or "")
        with self.write():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO callbacks (job_id, status, tag, body, received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (job_id, str(job.get("status") or ""), tag, body, now()),
            )
            return bool(cursor.rowcount)

    def unapplied_callbacks(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM callbacks WHERE applied = 0 ORDER BY received_at")

    def apply_callbacks(self, job_ids: Sequence[str]) -> None:
        """Flag the callbacks' jobs for collection first (and the callbacks as applied)."""
        stamp = now()
        with self.write() as version:
            for job_id in job_ids:
                self.execute(
                    "UPDATE jobs SET callback_at = coalesce(callback_at, ?), version = ?"
                    " WHERE job_id = ?",
                    (stamp, version, job_id),
                )
                self.execute("UPDATE callbacks SET applied = 1 WHERE job_id = ?", (job_id,))
