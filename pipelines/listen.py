"""`scrapesync listen`: one webhook intake server for every provider.

Providers that push notifications (webhooks, callbacks) POST to `http://HOST:PORT/<provider>/...`.
The server hands the delivery to the `webhook` handler of that provider's description
(`Provider.webhook`), stores the notifications it returns in the inbox
(`scrapesync.sources.common.inbox`, which documents the protocol) and answers 200; a handler's
`Rejected(status, reason)` is answered with that status and logged without secrets. Syncs work
without the intake too (polling).
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from dlt.common import logger

from scrapesync.pipelines import registry
from scrapesync.sources.common.inbox import Handler, NotificationStore, Rejected, WebhookRequest

MAX_BODY_BYTES = 1 << 20


def provider_handlers() -> dict[str, Handler]:
    """`POST /<provider>/...` routes: every registered provider that declares a handler."""
    return {p.name: p.webhook for p in registry.PROVIDERS.values() if p.webhook is not None}


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
        self.handlers = provider_handlers() if handlers is None else handlers
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
        self._answer(
            200 if self.path == "/health" else 405, {"providers": sorted(self.intake.handlers)}
        )

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
    """Add `scrapesync listen`."""
    parser = commands.add_parser("listen", help="receive provider webhooks for the next sync")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--dir", default=None, help="notification store directory")
    parser.set_defaults(func=cmd_listen)
