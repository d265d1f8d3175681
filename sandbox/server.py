"""The sandbox HTTP server: every provider's API on 127.0.0.1, with faults and a request log.

Each provider is mounted under `/<provider>` and keeps the paths its documents give beneath
it, so `base_url = http://127.0.0.1:PORT/reworkd` makes the real source code talk to it.

Admin API (JSON, no auth), mirrored by the `Sandbox` Python API used by tests:
  POST /_admin/advance?steps=N        evolve every provider's data N steps
  POST /_admin/faults                 add a fault rule (body: FaultRule fields)
  DELETE /_admin/faults               clear fault rules
  GET  /_admin/requests               the request log
  DELETE /_admin/requests             clear the request log
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from scrapesync.sandbox.base import ProviderAPI, SandboxRequest, SandboxResponse

FAULT_KINDS = ("status", "delay", "drop", "truncate", "html", "malformed", "empty", "mutate")
MUTATIONS = ("set", "drop", "add", "text")


@dataclass
class FaultRule:
    """Make matching requests fail.

    Attributes:
        provider: provider name the rule applies to ("*" for all).
        path: regex searched in the provider-relative path.
        kind: status (answer `status` with `body`/`headers`), delay (sleep `delay` s, then
            answer normally), drop (close the connection without answering), truncate (send a
            partial body), html (200 with an HTML page), malformed (200 with broken JSON),
            empty (answer normally but with the list at dotted path `body` emptied, the whole
            body when `body` is "": a page silently dropped, totals and cursors untouched),
            mutate (answer normally, then change every JSON object of the body holding key
            `field`: `op` "set" gives it `value`, "drop" removes it, "text" sends its value as
            JSON text (a number turning into a string); `op` "add" gives `field` = `value` to
            every object holding key `anchor`: bad input and schema drift).
        times: how many matching requests fail (None: all of them).
        skip: let this many matching requests through first.
    """

    provider: str = "*"
    path: str = ""
    kind: str = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0
    times: int | None = 1
    skip: int = 0
    method: str | None = None
    field: str = ""
    value: Any = None
    op: str = "set"
    anchor: str = ""

    def matches(self, provider: str, request: SandboxRequest) -> bool:
        if self.provider not in ("*", provider):
            return False
        if self.method and self.method != request.method:
            return False
        return re.search(self.path, request.path) is not None


@dataclass
class LoggedRequest:
    provider: str
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    fault: str | None
    at: float
    bytes: int = 0  # body bytes sent (before a `truncate` fault cuts them)


class FaultInjector:
    """Thread-safe list of fault rules, consumed as requests match them."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; one of {FAULT_KINDS}")
        if rule.kind == "mutate" and (rule.op not in MUTATIONS or not rule.field):
            raise ValueError(f"a mutate fault needs a `field` and an `op` in {MUTATIONS}")
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, provider: str, request: SandboxRequest) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(provider, request):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                return rule
        return None


class RequestLog:
    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, provider: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            found = list(self._entries)
        return [
            e
            for e in found
            if (provider is None or e.provider == provider)
            and (path is None or re.search(path, e.path))
        ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Sandbox:
    """All provider sandboxes behind one HTTP server.

    Example:
        >>> with Sandbox.start_default() as sandbox:
        ...     base_url = sandbox.url("reworkd")
    """

    def __init__(self, providers: Iterable[ProviderAPI]) -> None:
        self.providers = {provider.name: provider for provider in providers}
        self.faults = FaultInjector()
        self.requests = RequestLog()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

    @classmethod
    def start_default(
        cls, options: dict[str, dict[str, Any]] | None = None, port: int = 0
    ) -> Sandbox:
        """Start every provider's sandbox; `options` are per provider (`{"reworkd": {...}}`)."""
        from scrapesync.sandbox.registry import default_providers

        return cls(default_providers(options or {})).start(port=port)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Sandbox:
        handler = type("BoundHandler", (_Handler,), {"sandbox": self})
        self._server = _Server((host, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scrapesync-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "sandbox is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, provider: str) -> str:
        return f"{self.base_url}/{provider}"

    def advance(self, steps: int = 1) -> dict[str, dict[str, int]]:
        """Evolve every provider's data; returns per-provider counts of the changes."""
        totals: dict[str, dict[str, int]] = {}
        with self._lock:
            for _ in range(steps):
                for name, provider in self.providers.items():
                    for key, count in provider.advance().items():
                        bucket = totals.setdefault(name, {})
                        bucket[key] = bucket.get(key, 0) + count
        return totals

    def dispatch(self, provider_name: str, request: SandboxRequest) -> SandboxResponse:
        provider = self.providers.get(provider_name)
        if provider is None:
            return SandboxResponse.json({"detail": f"no provider {provider_name!r}"}, 404)
        with self._lock:
            return provider.handle(request)

    def admin(self, request: SandboxRequest) -> SandboxResponse:
        action = (request.method, request.path)
        if action == ("POST", "/_admin/advance"):
            return SandboxResponse.json(self.advance(int(request.param("steps", "1") or 1)))
        if action == ("POST", "/_admin/faults"):
            self.faults.add(FaultRule(**(request.json() or {})))
            return SandboxResponse.json({"ok": True})
        if action == ("DELETE", "/_admin/faults"):
            self.faults.clear()
            return SandboxResponse.json({"ok": True})
        if action == ("GET", "/_admin/requests"):
            return SandboxResponse.json([asdict(e) for e in self.requests.entries()])
        if action == ("DELETE", "/_admin/requests"):
            self.requests.clear()
            return SandboxResponse.json({"ok": True})
        return SandboxResponse.json({"detail": "unknown admin call"}, 404)


def _emptied(response: SandboxResponse, path: str) -> SandboxResponse:
    """`response` with the JSON list at dotted `path` (or the whole list body) emptied; a
    body that is not JSON (a CSV file) keeps its first line only."""
    try:
        payload = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        header = response.body.split(b"\n", 1)[0] + b"\n"
        return SandboxResponse(response.status, header, dict(response.headers))
    *parents, last = path.split(".") if path else [""]
    node = payload
    for key in parents:
        node = node[key]
    if last:
        node[last] = []
    else:
        payload = []
    return SandboxResponse(response.status, orjson.dumps(payload), dict(response.headers))


def _mutated(response: SandboxResponse, rule: FaultRule) -> SandboxResponse:
    """`response` with every JSON object holding `rule.field` (`rule.anchor` for "add")
    changed as the rule says; a body that is not JSON is left as it is."""
    try:
        payload = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return response
    key = rule.anchor if rule.op == "add" else rule.field
    for node in _objects(payload):
        if key not in node:
            continue
        if rule.op == "drop":
            del node[rule.field]
        elif rule.op == "text":
            value = node[rule.field]
            node[rule.field] = value if isinstance(value, str) else orjson.dumps(value).decode()
        else:
            node[rule.field] = rule.value
    return SandboxResponse(response.status, orjson.dumps(payload), dict(response.headers))


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside `node` (itself included), depth first."""
    if isinstance(node, dict):
        yield node
        children: Iterable[Any] = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return
    for child in children:
        yield from _objects(child)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a killed sync, a timed-out read) is routine here; any
        other error still gets the default traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    sandbox: Sandbox
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms to every keep-alive response (measured: 48 ms per request at zero latency)
    disable_nagle_algorithm = True
    server_version = "scrapesync-sandbox"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr line (the request log keeps them)."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        prefix, _, rest = parts.path.lstrip("/").partition("/")
        request = SandboxRequest(
            method=self.command,
            path="/" + rest,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=f"http://{self.headers.get('Host', '127.0.0.1')}/{prefix}",
        )
        if prefix == "_admin":
            request.path = parts.path
            self._write(self.sandbox.admin(request))
            return
        latency = getattr(self.sandbox.providers.get(prefix), "latency", 0.0)
        if latency:  # a network round trip: slept outside the dispatch lock, so requests overlap
            time.sleep(latency)
        fault = self.sandbox.faults.take(prefix, request)
        response = self._apply_fault(fault, prefix, request)
        self.sandbox.requests.add(
            LoggedRequest(
                prefix,
                request.method,
                request.path,
                request.query,
                response.status if response else 0,
                fault.kind if fault else None,
                time.time(),
                len(response.body) if response else 0,
            )
        )
        if response is not None:
            self._write(response, truncate=fault is not None and fault.kind == "truncate")

    def _apply_fault(
        self, fault: FaultRule | None, provider: str, request: SandboxRequest
    ) -> SandboxResponse | None:
        if fault is None:
            return self.sandbox.dispatch(provider, request)
        if fault.kind == "delay":
            time.sleep(fault.delay)
            return self.sandbox.dispatch(provider, request)
        if fault.kind == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        if fault.kind == "truncate":
            return self.sandbox.dispatch(provider, request)
        if fault.kind == "empty":
            return _emptied(self.sandbox.dispatch(provider, request), fault.body)
        if fault.kind == "mutate":
            return _mutated(self.sandbox.dispatch(provider, request), fault)
        if fault.kind == "html":
            page = fault.body or "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return SandboxResponse(200, page.encode(), {"Content-Type": "text/html"})
        if fault.kind == "malformed":
            return SandboxResponse.raw_json(fault.body.encode() or b'{"items": [{"id": 1,')
        body = fault.body.encode() if fault.body else orjson.dumps({"detail": "injected fault"})
        return SandboxResponse(
            fault.status, body, {"Content-Type": "application/json", **fault.headers}
        )

    def _write(self, response: SandboxResponse, truncate: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if truncate:
            self.wfile.write(response.body[: max(1, len(response.body) // 2)])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(response.body)
