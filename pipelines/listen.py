"""`scrapesync listen`: one webhook intake server for every provider.

Providers that push notifications (webhooks, callbacks) POST to `http://HOST:PORT/<provider>/...`.
The server hands the delivery to the `webhook` handler of that provider's description
(`Provider.webhook`), stores the notifications it returns in the inbox
(`scrapesync.sources.common.inbox`, which documents the protocol) and answers 200; a handler's
`Rejected(status, reason)` is answered with that status and logged without secrets. Syncs work
without the intake too (polling).

The HTTP layer is waitress (a pure-Python production WSGI server) because the intake is open to
anyone who can reach the port, and waitress bounds what such a sender can cost (`IntakeLimits`):

* the body: `Content-Length` must be digits (else 400) and at most `max_body_bytes` (else 413),
  checked on the headers, before a byte of the body is read; `Transfer-Encoding` is refused
  (411: providers send a length), so no body of unknown size is ever buffered;
* the headers: at most `max_header_bytes` (431);
* time: a request must arrive whole within `request_timeout` seconds of its first byte (a
  deadline waitress lacks, added here: its own `channel_timeout` only closes connections that
  send nothing, so a client trickling one byte at a time would hold one forever), and an idle
  keep-alive connection is closed after `idle_timeout`;
* concurrency: `connections` open connections at most (more wait in the listen backlog of
  `backlog`), handled by `threads` worker threads; waitress reads requests on one event loop,
  so a slow sender holds a connection, never a thread.

Every bad request gets a 4xx and no traceback: waitress answers protocol errors itself, and
anything a handler raises besides `Rejected` is logged (type and redacted message) and answered
500 so that the sender retries. The path after `/<provider>/` is never logged: a provider may
keep a secret there (a callback token).

A handler may have a `prepare()` method: `scrapesync listen` calls it at startup, so that a
configuration error stops the command with a clear message instead of failing each delivery.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import dlt
import orjson
from dlt.common import logger
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.utilities import BadRequest, ServerNotImplemented

from scrapesync.pipelines import registry
from scrapesync.sources.common.inbox import Handler, NotificationStore, Rejected, WebhookRequest
from scrapesync.sources.common.redact import redact

MAX_BODY_BYTES = 1 << 20
# after a refused request, input is discarded this long at most before the socket closes
LINGER_SECONDS = 2.0
_DISCARD_BYTES = 1 << 16

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class IntakeLimits:
    """What one sender can cost the intake (the defaults are `scrapesync listen`'s).

    The providers' webhook and callback bodies are a few hundred bytes (their pages in docs/),
    so 1 MiB is generous; 30 s is far longer than any sender needs to send one; 500
    connections and a backlog of 1,024 absorb a burst of deliveries without a reset.
    """

    max_body_bytes: int = MAX_BODY_BYTES
    max_header_bytes: int = 32 * 1024
    request_timeout: float = 30.0
    idle_timeout: int = 30
    connections: int = 500
    threads: int = 8
    backlog: int = 1024

    def adjustments(self, host: str, port: int) -> Adjustments:
        return Adjustments(
            host=host,
            port=port,
            threads=self.threads,
            connection_limit=self.connections,
            backlog=self.backlog,
            channel_timeout=self.idle_timeout,
            # the deadlines are checked this often (waitress checks on its event loop)
            cleanup_interval=max(1, int(min(self.request_timeout, self.idle_timeout) / 4)),
            # waitress refuses a body of `>=` this size; the limit is inclusive here
            max_request_body_size=self.max_body_bytes + 1,
            max_request_header_size=self.max_header_bytes,
            # a body above this goes to a temporary file: a full house of senders of the
            # largest bodies costs `connections` x 64 KiB of memory, not x 1 MiB
            inbuf_overflow=64 * 1024,
            # select() stops at 1,024 file descriptors; poll() has no such ceiling
            asyncore_use_poll=True,
            expose_tracebacks=False,
            ident="scrapesync-listen",
        )


class _LengthRequired(BadRequest):
    code = 411
    reason = "Length Required"


class _Parser(HTTPRequestParser):
    """waitress's request parser, stamped with its start and refusing bodies without a length."""

    error: Any = None  # waitress's default: no error (declared for the type checker)

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.started = time.time()

    def received(self, data: bytes) -> int:
        had_error = self.error is not None
        consumed: int = super().received(data)
        if self.error is None and self.headers_finished and self.chunked:
            self.error = _LengthRequired("send the body with a Content-Length")
            self.completed = True
        elif isinstance(self.error, ServerNotImplemented):  # an unknown Transfer-Encoding: 501
            self.error = _LengthRequired("Transfer-Encoding is not accepted")
        if self.error is not None and not had_error:
            # the rest of this read is the refused body: drop it rather than parse it as a
            # next request (the connection closes after the error answer anyway)
            return len(data)
        return consumed


class _Channel(HTTPChannel):
    """waitress's connection, with a lingering close after a refusal.

    Closing a socket that still has unread input makes the kernel reset the connection, and a
    reset can overtake the answer already sent: a sender streaming a refused body would see
    "connection reset" instead of the 4xx. So after an error answer the channel stops
    writing, then reads and discards whatever still arrives, for `LINGER_SECONDS` at most,
    before it closes (what nginx calls a lingering close); the body is never kept.
    """

    parser_class = _Parser
    linger_until: float | None = None
    _refused = False

    def service(self) -> None:
        # a worker thread; set before the answer goes out, so `handle_close` sees it
        if self.requests and self.requests[0].error is not None:
            self._refused = True
        super().service()

    def handle_close(self) -> None:
        if self._refused and self.linger_until is None and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the peer is gone already: close now
            else:
                self.linger_until = time.time() + LINGER_SECONDS
                return
        super().handle_close()

    def readable(self) -> bool:
        return self.linger_until is not None or bool(super().readable())

    def writable(self) -> bool:
        return self.linger_until is None and bool(super().writable())

    def handle_read(self) -> None:
        if self.linger_until is None:
            super().handle_read()
            return
        try:
            data = self.socket.recv(_DISCARD_BYTES)
        except OSError:
            data = b""
        if not data or time.time() > self.linger_until:
            super().handle_close()

    def linger_expired(self, now: float) -> bool:
        return self.linger_until is not None and now > self.linger_until


class _Server(TcpWSGIServer):
    channel_class = _Channel
    request_timeout = 30.0

    def maintenance(self, now: float) -> None:
        """waitress closes idle connections; this also closes those whose request is overdue
        and those lingering too long."""
        super().maintenance(now)
        cutoff = now - self.request_timeout
        for channel in list(self.active_channels.values()):
            if channel.linger_expired(now):
                channel.handle_close()
                continue
            request = channel.request
            if request is not None and getattr(request, "started", now) < cutoff:
                channel.will_close = True


def provider_handlers() -> dict[str, Handler]:
    """`POST /<provider>/...` routes: every registered provider that declares a handler."""
    return {p.name: p.webhook for p in registry.PROVIDERS.values() if p.webhook is not None}


class IntakeServer:
    """The HTTP intake: `POST /<provider>/...` -> handler -> store; `GET /health`."""

    def __init__(
        self,
        store: NotificationStore,
        handlers: dict[str, Handler] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: IntakeLimits | None = None,
    ) -> None:
        # dlt's logger is created with the first run context: without one, nothing is logged
        dlt.current.run_context()
        self.store = store
        self.handlers = provider_handlers() if handlers is None else handlers
        self.limits = limits or IntakeLimits()
        self._map: dict[int, Any] = {}
        self._server = _Server(self._wsgi, map=self._map, adj=self.limits.adjustments(host, port))
        self._server.request_timeout = self.limits.request_timeout
        self._stopping = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.effective_host, self._server.effective_port
        return f"http://{host!s}:{port}"

    def start(self) -> IntakeServer:
        """Serve in a background thread (tests, embedding)."""
        self._thread = threading.Thread(target=self.serve_forever, name="intake", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (or Ctrl+C)."""
        try:
            while not self._stopping.is_set():
                # one poll at a time, so that `stop()` is seen within one loop timeout
                wasyncore.loop(
                    timeout=self._server.adj.asyncore_loop_timeout,
                    use_poll=True,
                    map=self._map,
                    count=1,
                )
        finally:
            self._close()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if not self._closed:
                self._server.pull_trigger()  # wakes the poll at once
        if self._thread is not None:
            self._thread.join()
        self._close()

    def _close(self) -> None:
        # the sockets are closed by the thread that polls them, or once it has stopped; the
        # lock keeps `stop()` from waking a trigger that is already closed
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)

    def receive(self, request: WebhookRequest) -> tuple[int, dict[str, Any]]:
        """Verify, parse and store one delivery; returns (HTTP status, JSON answer)."""
        handler = self.handlers.get(request.provider)
        if handler is None:
            return 404, {"error": "no webhook handler at this path"}
        try:
            notifications = list(handler(request))
        except Rejected as exc:
            logger.warning(
                f"listen: rejected {request.provider} webhook from {request.remote} "
                f"({_loggable_path(request)}): {exc.status} {redact(exc.reason)}"
            )
            return exc.status, {"error": exc.reason}
        stored = sum(self.store.add(note) for note in notifications)
        logger.info(
            f"listen: {request.provider} webhook: {stored} stored, "
            f"{len(notifications) - stored} duplicate(s)"
        )
        return 200, {"stored": stored, "duplicates": len(notifications) - stored}

    def _wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, payload, extra = self._route(environ)
        body = orjson.dumps(payload)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra]
        start_response(f"{status} {_phrase(status)}", headers)
        return [body]

    def _route(self, environ: dict[str, Any]) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if method == "GET" and path == "/health":
            return 200, {"providers": sorted(self.handlers)}, []
        if method != "POST":
            return 405, {"error": "POST /<provider>/... or GET /health"}, [("Allow", "POST")]
        request = _webhook_request(environ)
        try:
            status, answer = self.receive(request)
        except Exception as exc:  # the delivery is answered 500 so the sender retries it
            logger.error(
                f"listen: {request.provider} webhook failed: {type(exc).__name__}: {redact(exc)}"
            )
            status, answer = 500, {"error": "internal error; retry the delivery"}
        return status, answer, []


def _webhook_request(environ: dict[str, Any]) -> WebhookRequest:
    """The delivery as handlers see it; waitress has already bounded and read the body."""
    provider, _, rest = environ.get("PATH_INFO", "").lstrip("/").partition("/")
    length = int(environ.get("CONTENT_LENGTH") or 0)  # digits only, checked by waitress
    body = environ["wsgi.input"].read(length) if length else b""
    headers = {
        name[5:].replace("_", "-").lower(): value
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    return WebhookRequest(
        provider=provider,
        path="/" + rest,
        headers=headers,
        body=body,
        remote=str(environ.get("REMOTE_ADDR", "")),
    )


def _loggable_path(request: WebhookRequest) -> str:
    """`/<provider>/***`: what follows the provider may be a secret (a callback token)."""
    return f"/{request.provider}/***" if request.path.strip("/") else f"/{request.provider}/"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def prepare_handlers(handlers: dict[str, Handler]) -> None:
    """Run each handler's startup check (`prepare()`, if it has one)."""
    for handler in handlers.values():
        prepare = getattr(handler, "prepare", None)
        if callable(prepare):
            prepare()


def cmd_listen(args: argparse.Namespace) -> int:
    store = NotificationStore(args.dir)
    handlers = provider_handlers()
    try:
        prepare_handlers(handlers)
    except ValueError as exc:  # a bad setting: say which, and do not start
        sys.stderr.write(f"scrapesync listen: {redact(exc)}\n")
        return 2
    server = IntakeServer(store, handlers, host=args.host, port=args.port)
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
    parser.add_argument(
        "--dir", default=None, help="local spool directory (used while a DuckDB file is busy)"
    )
    parser.set_defaults(func=cmd_listen)
