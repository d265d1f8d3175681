"""The webhook inbox: what `scrapesync listen` stores and the providers' syncs read.

A provider that pushes notifications declares a `Handler` in its `Provider` description
(`scrapesync.sources.common.provider`). The intake server (`scrapesync.pipelines.listen`) hands
each delivery to it as a `WebhookRequest`; the handler verifies it and returns `Notification`s
(or raises `Rejected(status, reason)`); the server stores them here, durably and idempotently;
the provider's next sync reads the pending ones first (`pending_notifications`) and
acknowledges them once its load has succeeded (`acknowledge_notifications`).

`Notification(provider, kind, object_id, status, dedupe_key)`: the store keeps one row per
`dedupe_key` (default `kind:object_id:status`), so a duplicate or replayed delivery is stored
once; order does not matter because a sync reads the object's current state from the API.

Storage: the destination itself (`sources/common/statedb.py`), table
`scrapesync_state.notifications`, so the listener (maybe on another machine) and any worker's
sync share it. The listener's destination is `[scrapesync] destination` (env
SCRAPESYNC__DESTINATION, default `duckdb` = `./scrapesync.duckdb`), configured the dlt way; a
sync reads the inbox of the destination its pipeline loads to. Every accepted notification is
committed before the 200 goes out. With a DuckDB file held by a running sync past a short
wait, it is kept in a local append-only spool (`--dir`, default `<dlt data dir>/scrapesync`,
fsync'd) and flushed into the file by a background thread as soon as the file is free.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext

from scrapesync.sources.common.statedb import StateDB

INBOX_SCHEMA = "scrapesync_state"
TABLE = (
    "CREATE TABLE IF NOT EXISTS notifications (seq BIGINT PRIMARY KEY, provider TEXT NOT NULL,"
    " kind TEXT NOT NULL, object_id TEXT NOT NULL, status TEXT NOT NULL,"
    " dedupe_key TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,"
    " acked_at DOUBLE PRECISION, UNIQUE (provider, dedupe_key))"
)
# bound parameters per acknowledge statement (SQLite's limit is the lowest)
CHUNK = 900


@dataclass(frozen=True)
class WebhookRequest:
    """One delivery as a handler sees it."""

    provider: str
    path: str
    headers: dict[str, str]
    body: bytes
    remote: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Notification:
    """What a handler asks the store to keep: "look at this object of this provider"."""

    provider: str
    kind: str
    object_id: str
    status: str = ""
    dedupe_key: str | None = None

    def key(self) -> str:
        return self.dedupe_key or f"{self.kind}:{self.object_id}:{self.status}"


@dataclass(frozen=True)
class StoredNotification:
    seq: int
    provider: str
    kind: str
    object_id: str
    status: str
    received_at: float


class Rejected(Exception):  # noqa: N818 (handlers read as `raise Rejected(401, ...)`)
    """A handler's refusal: the server answers `status` and logs `reason` (no secrets)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Handler = Callable[[WebhookRequest], Iterable[Notification]]


def store_dir(directory: str | Path | None = None) -> Path:
    """The local spool's directory: `directory`, else dlt config `scrapesync.webhook_dir`
    (env SCRAPESYNC__WEBHOOK_DIR), else `<dlt data dir>/scrapesync`."""
    if directory:
        return Path(directory)
    configured: Any = dlt.config.get("scrapesync.webhook_dir")
    default = Path(dlt.current.run_context().data_dir) / "scrapesync"
    return Path(configured) if configured else default


def inbox_db(pipeline: Any = None, spool_dir: str | Path | None = None) -> StateDB:
    """The inbox of `pipeline`'s destination, else of `[scrapesync] destination`."""
    spool = store_dir(spool_dir)
    if pipeline is not None:
        return StateDB.for_pipeline(pipeline, INBOX_SCHEMA, spool_dir=spool)
    return StateDB.from_config(INBOX_SCHEMA, spool_dir=spool)


class NotificationStore:
    """Durable, idempotent notification inbox in the destination (see the module docstring).

    `NotificationStore(spool_dir)` is the listener's: the destination from config, the spool
    in `spool_dir`; `NotificationStore(db=inbox_db(pipeline))` is a sync's.
    """

    def __init__(self, spool_dir: str | Path | None = None, db: StateDB | None = None) -> None:
        self.db = db if db is not None else inbox_db(spool_dir=spool_dir)
        self.path = self.db.location  # printable: where the notifications are kept

    def _ready(self) -> StateDB:
        self.db.ensure("inbox", (TABLE,))
        return self.db

    def add(self, notification: Notification) -> bool:
        """Store it; False when the same notification was stored before (a duplicate)."""
        row = {
            # a random key: unique without a sequence (which DuckDB, PostgreSQL and SQLite
            # spell differently); 52 bits stay exact in JSON state
            "seq": secrets.randbits(52),
            "provider": notification.provider,
            "kind": notification.kind,
            "object_id": notification.object_id,
            "status": notification.status,
            "dedupe_key": notification.key(),
            "received_at": time.time(),
        }
        return self.db.insert_or_spool("notifications", row, (TABLE,))

    def pending(self, provider: str, kind: str | None = None) -> list[StoredNotification]:
        """Notifications not acknowledged yet, oldest first."""
        sql = (
            "SELECT seq, provider, kind, object_id, status, received_at FROM notifications "
            "WHERE provider = ? AND acked_at IS NULL"
        )
        args: list[Any] = [provider]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        rows = self._ready().query(sql + " ORDER BY received_at, seq", args)
        return [StoredNotification(**row) for row in rows]

    def acknowledge(self, provider: str, seqs: Iterable[int]) -> int:
        """Mark notifications done; returns how many were still pending."""
        numbers = [int(seq) for seq in seqs]
        done = 0
        for start in range(0, len(numbers), CHUNK):
            chunk = numbers[start : start + CHUNK]
            marks = ", ".join("?" * len(chunk))
            with self._ready().transaction() as tx:
                done += len(
                    tx.execute(
                        f"UPDATE notifications SET acked_at = ? WHERE provider = ? AND seq IN"
                        f" ({marks}) AND acked_at IS NULL RETURNING seq",
                        [time.time(), provider, *chunk],
                    )
                )
        return done


def _sync_store(directory: str | Path | None) -> NotificationStore:
    """The store a sync reads: its own pipeline's destination (the one being run)."""
    context = Container()[PipelineContext]
    pipeline = context.pipeline() if context.is_active() else None
    return NotificationStore(db=inbox_db(pipeline, directory))


def pending_notifications(
    provider: str,
    directory: str | Path | None = None,
    kind: str | None = None,
    db: StateDB | None = None,
) -> list[StoredNotification]:
    """What the sources call: `provider`'s pending notifications, oldest first (from `db`,
    default the destination of the pipeline being run)."""
    store = NotificationStore(db=db) if db is not None else _sync_store(directory)
    try:
        return store.pending(provider, kind)
    finally:
        store.db.release()  # a sync's one read: the file is free for its load at once


def acknowledge_notifications(
    provider: str,
    seqs: Iterable[int],
    directory: str | Path | None = None,
    db: StateDB | None = None,
) -> int:
    """What the sources' post-load steps call once the data is loaded."""
    store = NotificationStore(db=db) if db is not None else _sync_store(directory)
    try:
        return store.acknowledge(provider, seqs)
    finally:
        store.db.release()
