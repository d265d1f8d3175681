"""Building blocks shared by every provider's sandbox API: requests, responses, routing."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson


@dataclass
class SandboxRequest:
    """One HTTP request as a provider API sees it (path without the `/<provider>` prefix)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    base_url: str = ""

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


@dataclass
class SandboxResponse:
    """What the server writes back: status, headers and an already-encoded body."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> SandboxResponse:
        return cls(
            status, orjson.dumps(payload), {"Content-Type": "application/json", **(headers or {})}
        )

    @classmethod
    def raw_json(cls, body: bytes, status: int = 200) -> SandboxResponse:
        return cls(status, body, {"Content-Type": "application/json"})


Handler = Callable[[SandboxRequest, dict[str, str]], SandboxResponse]


class ProviderAPI:
    """Base class of one provider's sandbox: a route table plus evolving data.

    Subclasses fill `routes` with (method, path regex, handler) rows; named groups of the regex
    are passed to the handler as its second argument.
    """

    name: str = ""
    # options `scrapesync demo` starts this sandbox with (a bigger or smaller data set)
    DEMO_OPTIONS: ClassVar[Mapping[str, Any]] = {}
    # seconds the server waits before answering each request (simulated network latency)
    latency: float = 0.0

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        path_matched = False
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                return handler(request, match.groupdict())
        if path_matched:
            return self.error(405, "Method Not Allowed")
        return self.error(404, "Not Found")

    def error(self, status: int, message: str, **extra: Any) -> SandboxResponse:
        """The provider's own error envelope (overridden per provider)."""
        return SandboxResponse.json({"detail": message, **extra}, status)

    def advance(self) -> dict[str, int]:
        """Move the provider's data one step forward; returns counts of what changed."""
        return {}

    def truth(self) -> dict[str, Any]:
        """What a correct sync must end up with (used by tests)."""
        return {}

    def expected_rows(self) -> dict[str, int]:
        """Rows each table must hold after a complete sync (the demo checks these)."""
        return {}

    def source_options(self, base_url: str) -> dict[str, Any]:
        """Source arguments that point scrapesync's source at this sandbox."""
        return {"base_url": base_url}
