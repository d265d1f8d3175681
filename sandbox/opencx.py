"""open.cx sandbox: the Crawl API under its paths (docs/opencx.md), deterministic and evolving.

This module is the HTTP side: routes, auth, rate limit, validation and handlers; the data and
the crawl state machine are in `sandbox/opencx_world.py`. Faithful where the docs speak: Bearer
`ocx_live_*` keys with `crawl:read` / `crawl:write` scopes (401 / 403), Fastify error envelopes,
UUID path validation (400), one active crawl per datasource (409), `{items, next}` cursor lists,
a per-key rolling-window rate limiter answering 429 with `Retry-After`. Undocumented list paths
follow docs/opencx.md#endpoints (inferred).
"""

from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from scrapesync.sandbox.base import ProviderAPI, SandboxRequest, SandboxResponse
from scrapesync.sandbox.opencx_world import TERMINAL, CrawlWorld, ts

__all__ = ["DEFAULT_KEY", "READ_ONLY_KEY", "TERMINAL", "OpenCXAPI"]

DEFAULT_KEY = "ocx_live_sandbox_full_access_key"
READ_ONLY_KEY = "ocx_live_sandbox_read_only_key"
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    DEFAULT_KEY: ("crawl:read", "crawl:write"),
    READ_ONLY_KEY: ("crawl:read",),
}
UUID_RE = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"
)
EDITABLE = {"display_name", "page_limit", "exclude_paths", "include_paths", "status"}
EDITABLE.add("crawl_interval_hours")
ID = "[^/]+"  # any segment: malformed ids must reach validation (400), not routing (404)


class RateLimiter:
    """Per-key rolling window, like @fastify/rate-limit's 429 (rejected calls are not counted)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - self.window:
                calls.popleft()
            allowed = len(calls) < self.limit
            if allowed:
                calls.append(now)
            reset = calls[0] + self.window - now if calls else self.window
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.limit - len(calls))),
            "x-ratelimit-reset": str(math.ceil(reset)),
        }
        if not allowed:
            headers["retry-after"] = str(max(1, math.ceil(reset)))
        return allowed, headers


class OpenCXAPI(CrawlWorld, ProviderAPI):
    """Deterministic, evolving open.cx website datasources and crawl jobs, served over HTTP.

    Args:
        datasources: datasources that exist before the first sync.
        jobs_per_datasource: finished crawl jobs in each datasource's history.
        seed: seed of the deterministic generator.
        rate_limit, rate_window: requests allowed per key in any `rate_window` seconds (open.cx:
            100 per 60 s; tests use a short window so throttling shows in seconds).
        list_page_size: default page size of the lists (`limit`, 1..100, is honoured).
        list_includes_details: lists carry `page_stats`/`active_crawl_job` (default: only the
            single-datasource read does, as documented for `GET /crawl/{id}`).
        updated_after_field: the job field the list's `updated_after` filters on: `updated_at`
            (the likely meaning), `created_at` (a server that filters on creation), or None
            (a server that ignores the parameter).
        newest_first: job-list order (inferred newest first, docs/opencx.md#pagination).
        advance_on_poll: each read of a running job moves that job one step (for `--wait`).
        api_keys: accepted keys and their scopes.
    """

    name = "opencx"

    def __init__(
        self,
        datasources: int = 4,
        jobs_per_datasource: int = 3,
        seed: int = 11,
        rate_limit: int = 100,
        rate_window: float = 60.0,
        list_page_size: int = 20,
        list_includes_details: bool = False,
        updated_after_field: str | None = "updated_at",
        newest_first: bool = True,
        advance_on_poll: bool = False,
        api_keys: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        ProviderAPI.__init__(self)
        self.api_keys = dict(api_keys or DEFAULT_KEYS)
        self.limiter = RateLimiter(rate_limit, rate_window)
        self.list_page_size = list_page_size
        self.list_includes_details = list_includes_details
        self.updated_after_field = updated_after_field
        self.newest_first = newest_first
        self.advance_on_poll = advance_on_poll
        CrawlWorld.__init__(self, datasources, jobs_per_datasource, seed)
        self._routes()

    def source_options(self, base_url: str) -> dict[str, Any]:
        window = self.limiter.window
        return {
            "base_url": base_url,
            "api_key": READ_ONLY_KEY
            if READ_ONLY_KEY in self.api_keys
            else sorted(self.api_keys)[0],
            "requests_per_minute": self.limiter.limit * 60 / window,
            "pacing_window_seconds": min(window, 60.0),
        }

    # -- HTTP -------------------------------------------------------------------------------
    def _routes(self) -> None:
        ds, job = f"/crawl/(?P<id>{ID})", f"/crawl/(?P<id>{ID})/crawls/(?P<jobId>{ID})"
        table: list[tuple[str, str, Callable[..., SandboxResponse], str]] = [
            ("GET", "/crawl", self.list_datasources, "crawl:read"),
            ("POST", "/crawl", self.create, "crawl:write"),
            ("GET", ds, self.get_datasource, "crawl:read"),
            ("PATCH", ds, self.update, "crawl:write"),
            ("DELETE", ds, self.delete, "crawl:write"),
            ("GET", f"{ds}/crawls", self.list_jobs, "crawl:read"),
            ("POST", f"{ds}/crawls", self.start, "crawl:write"),
            ("GET", job, self.get_job, "crawl:read"),
            # the cancel path is not documented: both candidates are accepted
            # (docs/opencx.md#endpoints)
            ("POST", f"{job}/cancel", self.cancel_job, "crawl:write"),
            ("DELETE", job, self.cancel_job, "crawl:write"),
        ]
        for method, pattern, handler, scope in table:
            self.route(method, pattern, self._guarded(handler, scope))

    def error(self, status: int, message: str, **extra: Any) -> SandboxResponse:
        names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
        names.update({405: "Method Not Allowed", 409: "Conflict", 429: "Too Many Requests"})
        body = {"statusCode": status, "error": names.get(status, "Error"), "message": message}
        return SandboxResponse.json({**body, **extra}, status)

    def _invalid(self, message: str) -> SandboxResponse:
        return self.error(400, message, code="FST_ERR_VALIDATION")

    def _guarded(self, handler: Callable[..., SandboxResponse], scope: str) -> Any:
        """Auth (401), per-key rate limit (429), UUID validation (400), scope (403)."""

        def guarded(request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
            header = request.header("authorization") or ""
            key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            if key not in self.api_keys:
                return self.error(401, "Unauthorized")
            allowed, headers = self.limiter.check(key)
            if not allowed:
                response = self.error(429, "Rate limit exceeded, retry in 1 minute")
            elif bad := next((n for n, v in args.items() if not UUID_RE.match(v)), None):
                response = self._invalid(f'params/{bad} must match format "uuid"')
            elif scope not in self.api_keys[key]:
                response = self.error(403, f"Missing required scope: {scope}")
            elif args.get("id") and args["id"] not in self.datasources:
                response = self.error(404, "Datasource not found")
            else:
                response = handler(request, args)
            response.headers.update(headers)
            return response

        return guarded

    def _page(self, request: SandboxRequest, rows: list[dict[str, Any]]) -> SandboxResponse:
        """`{items, next}`: keyset cursor over `rows` (already in list order)."""
        raw_limit = request.param("limit") or str(self.list_page_size)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            return self._invalid("querystring/limit must be an integer between 1 and 100")
        start = 0
        if cursor := request.param("cursor"):
            try:
                after = base64.urlsafe_b64decode(cursor.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                return self._invalid("Invalid cursor")
            start = next((i + 1 for i, row in enumerate(rows) if row["id"] == after), -1)
            if start < 0:
                return self._invalid("Invalid cursor")
        items = rows[start : start + int(raw_limit)]
        more = start + len(items) < len(rows)
        token = base64.urlsafe_b64encode(items[-1]["id"].encode()).decode() if more else None
        return SandboxResponse.json({"items": items, "next": token})

    def list_datasources(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        order = sorted(self.datasources.values(), key=lambda d: (d["created_at"], d["id"]))
        if self.list_includes_details:
            order = [self.detail(d["id"]) for d in order]
        return self._page(request, order)

    def get_datasource(self, _: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        return SandboxResponse.json(self.detail(args["id"]))

    def create(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        body = request.json() or {}
        if not isinstance(body.get("url"), str) or not body["url"].startswith("http"):
            return self._invalid('body/url must match format "uri"')
        if problem := _invalid_fields(body):
            return self._invalid(problem)
        fields = {k: v for k, v in body.items() if k not in ("url", "auto_start_crawl")}
        ds_id = self.create_datasource(
            body["url"], bool(body.get("auto_start_crawl", True)), **fields
        )
        return SandboxResponse.json(self.datasources[ds_id], 201)

    def update(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        body = request.json() or {}
        if problem := _invalid_fields(body):
            return self._invalid(problem)
        if "status" in body and body["status"] not in ("active", "paused"):
            return self._invalid("body/status must be equal to one of the allowed values")
        self._touch(args["id"], **{k: v for k, v in body.items() if k in EDITABLE})
        return SandboxResponse.json(self.datasources[args["id"]])

    def delete(self, _: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        gone = self.datasources[args["id"]]
        self.delete_datasource(args["id"])
        return SandboxResponse.json(gone)

    def list_jobs(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        rows = sorted(self.jobs[args["id"]], key=lambda j: (j["created_at"], j["id"]))
        if self.newest_first:
            rows.reverse()
        since = request.param("updated_after")
        if since:
            try:
                moment = ts(datetime.fromisoformat(since.replace("Z", "+00:00")).astimezone(UTC))
            except ValueError:
                return self._invalid('querystring/updated_after must match format "date-time"')
            if field := self.updated_after_field:
                rows = [job for job in rows if job[field] >= moment]
        return self._page(request, rows)

    def start(self, _: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        if self.active[args["id"]]:
            return self.error(409, "A crawl is already in progress")
        return SandboxResponse.json(self.start_crawl(args["id"]), 201)

    def get_job(self, _: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        job = self._job(args["id"], args["jobId"])
        if job is None:
            return self.error(404, "Crawl job not found")
        if self.advance_on_poll and job["status"] not in TERMINAL:
            self.clock += timedelta(seconds=30)
            self._step_job(args["id"], job)
        return SandboxResponse.json(job)

    def cancel_job(self, _: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        job = self._job(args["id"], args["jobId"])
        if job is None:
            return self.error(404, "Crawl job not found")
        if job["status"] in TERMINAL:
            return self.error(409, f"Crawl job is already {job['status']}")
        self.cancel(args["id"], job)
        return SandboxResponse.json(job)


def _invalid_fields(body: dict[str, Any]) -> str | None:
    """Documented ranges of the create/update bodies (docs/opencx.md#endpoints)."""
    limit = body.get("page_limit")
    if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= 5000):
        return "body/page_limit must be >= 1 and <= 5000"
    hours = body.get("crawl_interval_hours")
    if hours is not None and (not isinstance(hours, int) or hours < 24):
        return "body/crawl_interval_hours must be >= 24"
    return None
