"""`scrapesync listen`: one webhook intake server for every provider.

Providers that push notifications (Outscraper webhooks, Oxylabs callbacks, ...) POST to
`http://HOST:PORT/<provider>/...`. The server looks the provider up in a registry of
handlers; the handler verifies the request and turns it into notifications; the server stores
them durably and idempotently; the provider's next sync reads the pending ones first and
acknowledges them once its load has succeeded. Syncs work without the intake too (polling).

Registering a handler (do it at import time of the provider's CLI module, which
`pipelines/registry.py` imports, so `scrapesync listen` always knows it)::

    from scrapesync.pipelines.listen import Notification, Rejected, WebhookRequest, register_handler

    def my_handler(request: WebhookRequest) -> list[Notification]:
        if not valid(request):                 # signature, IP allow-list, ...
            raise Rejected(401, "bad signature")   # logged without secrets, answered 401
        return [Notification("myprovider", "job", job_id, status, dedupe_key=None)]

    register_handler("myprovider", my_handler)

`WebhookRequest` holds the path below the provider prefix, lower-cased headers, the raw body
and the client address. `Notification(provider, kind, object_id, status, dedupe_key)`: the
store keeps one row per `dedupe_key` (default `kind:object_id:status`), so a duplicate or
replayed delivery is stored once and answered 200; order does not matter because a sync reads
the object's current state from the API. Raise `Rejected(status, reason)` to refuse.

Reading from a source (`pending_notifications(provider, directory, kind=None)`) returns
`StoredNotification`s (with `seq`); `acknowledge_notifications(provider, seqs, directory)`
marks them done after the load that used them succeeded.

Storage: SQLite in WAL mode with `synchronous=FULL` (every accepted notification is on disk
before the 200 goes out), file `notifications.sqlite` in `--dir`, else dlt config
`scrapesync.webhook_dir` (env `SCRAPESYNC__WEBHOOK_DIR`), else `<dlt data dir>/scrapesync`.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dlt
import orjson
from dlt.common import logger

STORE_FILE = "notifications.sqlite"
MAX_BODY_BYTES = 1 << 20


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
HANDLERS: dict[str, Handler] = {}


def register_handler(provider: str, handler: Handler) -> None:
    """Route `POST /<provider>/...` to `handler` (a later registration replaces it)."""
    HANDLERS[provider] = handler


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


class IntakeServer:
    """The HTTP intake: `POST /<provider>/...` -> handler -> store."""

    def __init__(
        self,
        store: NotificationStore,
        handlers: dict[str, Handler] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = store
        self.handlers = HANDLERS if handlers is None else handlers
        handler = type("BoundIntake", (_IntakeHandler,), {"intake": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> IntakeServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def receive(self, request: WebhookRequest) -> tuple[int, dict[str, Any]]:
        """Verify, parse and store one delivery; returns (HTTP status, JSON answer)."""
        handler = self.handlers.get(request.provider)
        if handler is None:
            return 404, {"error": f"no webhook handler for {request.provider!r}"}
        try:
            notifications = list(handler(request))
        except Rejected as exc:
            logger.warning(
                f"listen: rejected {request.provider} webhook from {request.remote} "
                f"({request.path}): {exc.status} {exc.reason}"
            )
            return exc.status, {"error": exc.reason}
        stored = sum(self.store.add(note) for note in notifications)
        logger.info(
            f"listen: {request.provider} webhook: {stored} stored, "
            f"{len(notifications) - stored} duplicate(s)"
        )
        return 200, {"stored": stored, "duplicates": len(notifications) - stored}


class _IntakeHandler(BaseHTTPRequestHandler):
    intake: IntakeServer
    protocol_version = "HTTP/1.1"
    server_version = "scrapesync-listen"

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: `receive` logs each delivery through dlt's logger."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, {"error": "body too large"})
            return
        body = self.rfile.read(length) if length else b""
        provider, _, rest = self.path.split("?", 1)[0].lstrip("/").partition("/")
        request = WebhookRequest(
            provider=provider,
            path="/" + rest,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            remote=self.client_address[0],
        )
        try:
            status, answer = self.intake.receive(request)
        except Exception as exc:  # the delivery is answered 500 so the sender retries it
            logger.error(f"listen: {provider} webhook failed: {type(exc).__name__}: {exc}")
            status, answer = 500, {"error": "internal error; retry the delivery"}
        self._answer(status, answer)

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/health" else 405, {"providers": sorted(HANDLERS)})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def cmd_listen(args: argparse.Namespace) -> int:
    store = NotificationStore(args.dir)
    server = IntakeServer(store, host=args.host, port=args.port)
    providers = ", ".join(f"{server.url}/{name}" for name in sorted(server.handlers))
    print(f"listening for webhooks on {providers or '(no handler registered)'}", flush=True)  # noqa: T201
    print(f"notifications are stored in {store.path} (Ctrl+C to stop)", flush=True)  # noqa: T201
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Add `scrapesync listen` (idempotent: every provider with webhooks may call it)."""
    if "listen" in commands.choices:
        return
    parser = commands.add_parser("listen", help="receive provider webhooks for the next sync")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--dir", default=None, help="notification store directory")
    parser.set_defaults(func=cmd_listen)
