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

Storage: SQLite in WAL mode with `synchronous=FULL` (every accepted notification is on disk
before the 200 goes out), file `notifications.sqlite` in `--dir`, else dlt config
`scrapesync.webhook_dir` (env `SCRAPESYNC__WEBHOOK_DIR`), else `<dlt data dir>/scrapesync`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt

STORE_FILE = "notifications.sqlite"


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
    """The notification store's directory (see the module docstring for the order)."""
    if directory:
        return Path(directory)
    configured: Any = dlt.config.get("scrapesync.webhook_dir")
    default = Path(dlt.current.run_context().data_dir) / "scrapesync"
    return Path(configured) if configured else default


class NotificationStore:
    """Durable, idempotent notification journal (SQLite, one connection per call)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.path = store_dir(directory) / STORE_FILE
        self._lock = threading.Lock()

    @contextmanager
    def _db(self, create: bool) -> Iterator[sqlite3.Connection]:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if create:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS notifications (seq INTEGER PRIMARY KEY "
                    "AUTOINCREMENT, provider TEXT NOT NULL, kind TEXT NOT NULL, object_id TEXT "
                    "NOT NULL, status TEXT NOT NULL, dedupe_key TEXT NOT NULL, received_at REAL "
                    "NOT NULL, acked_at REAL, UNIQUE (provider, dedupe_key))"
                )
            yield db

    def add(self, notification: Notification) -> bool:
        """Store it; False when the same notification was stored before (a duplicate)."""
        with self._lock, self._db(create=True) as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO notifications (provider, kind, object_id, status, "
                "dedupe_key, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    notification.provider,
                    notification.kind,
                    notification.object_id,
                    notification.status,
                    notification.key(),
                    time.time(),
                ),
            )
            return cursor.rowcount == 1

    def pending(self, provider: str, kind: str | None = None) -> list[StoredNotification]:
        """Notifications not acknowledged yet, oldest first (none if nothing was stored)."""
        if not self.path.exists():
            return []
        sql = (
            "SELECT seq, provider, kind, object_id, status, received_at FROM notifications "
            "WHERE provider = ? AND acked_at IS NULL"
        )
        args: list[Any] = [provider]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        with self._db(create=False) as db:
            rows = db.execute(sql + " ORDER BY seq", args).fetchall()
        return [StoredNotification(*row) for row in rows]

    def acknowledge(self, provider: str, seqs: Iterable[int]) -> int:
        """Mark notifications done; returns how many were still pending."""
        numbers = [(time.time(), provider, int(seq)) for seq in seqs]
        if not numbers or not self.path.exists():
            return 0
        with self._lock, self._db(create=False) as db:
            before = db.total_changes
            db.executemany(
                "UPDATE notifications SET acked_at = ? WHERE provider = ? AND seq = ? "
                "AND acked_at IS NULL",
                numbers,
            )
            return db.total_changes - before


def pending_notifications(
    provider: str, directory: str | Path | None = None, kind: str | None = None
) -> list[StoredNotification]:
    """What the sources call: `provider`'s pending notifications, oldest first."""
    return NotificationStore(directory).pending(provider, kind)


def acknowledge_notifications(
    provider: str, seqs: Iterable[int], directory: str | Path | None = None
) -> int:
    """What the sources' post-load steps call once the data is loaded."""
    return NotificationStore(directory).acknowledge(provider, seqs)
