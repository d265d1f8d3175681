"""open.cx sandbox: the Crawl API under its paths (api-notes.md §5.5), deterministic and evolving.

Datasources (`/crawl`) and their crawl jobs (`/crawl/{id}/crawls`) on a virtual clock: each
`advance()` is ten minutes in which pending jobs start, scraping jobs grow their page counters
and end (`completed`, sometimes `failed`), idle datasources get scheduled recrawls and new
datasources appear. Faithful where the docs speak: Bearer `ocx_live_*` keys with `crawl:read` /
`crawl:write` scopes (401 / 403), Fastify error envelopes, UUID path validation (400), one active
crawl per datasource (409), `{items, next}` cursor lists, a per-key rolling-window rate limiter
answering 429 with `Retry-After`. Undocumented list paths follow api-notes §5.2 [I].
"""

from __future__ import annotations

import base64
import math
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from scrapesync.sandbox.base import ProviderAPI, SandboxRequest, SandboxResponse

DEFAULT_KEY = "ocx_live_sandbox_full_access_key"
READ_ONLY_KEY = "ocx_live_sandbox_read_only_key"
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    DEFAULT_KEY: ("crawl:read", "crawl:write"),
    READ_ONLY_KEY: ("crawl:read",),
}
EPOCH = datetime(2025, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
UUID_RE = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"
)
TERMINAL = ("completed", "failed", "cancelled")
ACTIVE_FIELDS = ["id", "status", "total_pages", "completed_pages", "new_pages", "updated_pages"]
ACTIVE_FIELDS += ["removed_pages", "unchanged_pages", "started_at"]
EDITABLE = {"display_name", "page_limit", "exclude_paths", "include_paths", "status"}
EDITABLE.add("crawl_interval_hours")
ID = "[^/]+"  # any segment: malformed ids must reach validation (400), not routing (404)


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


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


class OpenCXAPI(ProviderAPI):
    """Deterministic, evolving open.cx website datasources and crawl jobs.

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
        newest_first: job-list order (api-notes [I]: newest first).
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
        super().__init__()
        self.rng = random.Random(seed)
        self.clock = EPOCH
        self.api_keys = dict(api_keys or DEFAULT_KEYS)
        self.limiter = RateLimiter(rate_limit, rate_window)
        self.list_page_size = list_page_size
        self.list_includes_details = list_includes_details
        self.updated_after_field = updated_after_field
        self.newest_first = newest_first
        self.advance_on_poll = advance_on_poll
        self.datasources: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, dict[str, int]] = {}
        self.site_pages: dict[str, int] = {}
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        self.active: dict[str, str | None] = {}
        self.graveyard: dict[str, dict[str, Any]] = {}
        self._seed_data(datasources, jobs_per_datasource)
        self._routes()

    # -- data -------------------------------------------------------------------------------
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _seed_data(self, count: int, history: int) -> None:
        self.clock = EPOCH - timedelta(days=history * 8 + 8)
        ids = [
            self.create_datasource(f"https://docs{i}.example.com", auto_start=False)
            for i in range(count)
        ]
        for round_ in range(history):
            self.clock = EPOCH - timedelta(days=(history - round_) * 8)
            for ds_id in ids:
                job = self.start_crawl(ds_id)
                while job["status"] not in TERMINAL:
                    self._step_job(ds_id, job, fail_rate=0.1 if round_ else 0.0)
                    self.clock += STEP
        # something is happening when the first sync runs: a crawl half way, one just queued
        self.clock = EPOCH - 2 * STEP
        if ids:
            job = self.start_crawl(ids[0])
            for _ in range(2):
                self.clock += STEP
                self._step_job(ids[0], job)
        self.clock = EPOCH
        if len(ids) > 1:
            self.start_crawl(ids[1])

    def create_datasource(self, url: str, auto_start: bool = True, **fields: Any) -> str:
        ds_id = self._uuid()
        now = ts(self.clock)
        host = re.sub(r"^https?://", "", url).split("/")[0]
        self.datasources[ds_id] = {
            "id": ds_id,
            "url": url,
            "display_name": fields.get("display_name") or host,
            "status": "active",
            "page_limit": fields.get("page_limit", 100),
            "exclude_paths": fields.get("exclude_paths", []),
            "include_paths": fields.get("include_paths", []),
            "crawl_interval_hours": fields.get("crawl_interval_hours", 168),
            "last_crawl_started_at": None,
            "last_crawl_completed_at": None,
            "error_message": None,
            "created_at": now,
            "updated_at": now,
        }
        self.stats[ds_id] = {"total": 0, "synced": 0, "pending": 0, "error": 0, "excluded": 0}
        self.site_pages[ds_id] = self.rng.randint(40, 400)
        self.jobs[ds_id] = []
        self.active[ds_id] = None
        if auto_start:
            self.start_crawl(ds_id)
        return ds_id

    def delete_datasource(self, ds_id: str) -> None:
        """Delete a datasource and its jobs (kept in `graveyard` for `truth()`)."""
        self.graveyard[ds_id] = {
            "datasource": self.datasources.pop(ds_id),
            "jobs": self.jobs.pop(ds_id),
        }
        self.stats.pop(ds_id)
        self.active.pop(ds_id)

    def start_crawl(self, ds_id: str) -> dict[str, Any]:
        now = ts(self.clock)
        job: dict[str, Any] = {
            "id": self._uuid(),
            "datasource_id": ds_id,
            "status": "pending",
            "started_at": None,
            "completed_at": None,
            "total_pages": None,
            "completed_pages": 0,
            "new_pages": 0,
            "updated_pages": 0,
            "removed_pages": 0,
            "unchanged_pages": 0,
            "error_message": None,
            "created_at": now,
            "updated_at": now,
        }
        self.jobs[ds_id].append(job)
        self.active[ds_id] = job["id"]
        self._touch(ds_id, last_crawl_started_at=now)
        return job

    def cancel(self, ds_id: str, job: dict[str, Any]) -> None:
        self._finish(ds_id, job, "cancelled")

    def _touch(self, ds_id: str, **fields: Any) -> None:
        self.datasources[ds_id].update(fields, updated_at=ts(self.clock))

    def _step_job(self, ds_id: str, job: dict[str, Any], fail_rate: float = 0.0) -> None:
        """One step of the job's state machine: pending -> scraping -> completed | failed."""
        now = ts(self.clock)
        if job["status"] == "pending":
            limit = self.datasources[ds_id]["page_limit"] or 5000
            job.update(
                status="scraping", started_at=now, total_pages=min(limit, self.site_pages[ds_id])
            )
        elif job["status"] == "scraping":
            if self.rng.random() < fail_rate:
                self._finish(ds_id, job, "failed", "Crawler timed out after 3 retries")
                return
            total = job["total_pages"]
            chunk = min(total - job["completed_pages"], max(1, math.ceil(total * 0.4)))
            new = chunk // 10 if self.stats[ds_id]["total"] else chunk
            updated = (chunk - new) // 4
            job["completed_pages"] += chunk
            job["new_pages"] += new
            job["updated_pages"] += updated
            job["unchanged_pages"] += chunk - new - updated
            if job["completed_pages"] >= total:
                job["removed_pages"] = max(0, self.stats[ds_id]["total"] - total + job["new_pages"])
                self._finish(ds_id, job, "completed")
                return
        job["updated_at"] = now

    def _finish(
        self, ds_id: str, job: dict[str, Any], status: str, error: str | None = None
    ) -> None:
        now = ts(self.clock)
        job.update(status=status, completed_at=now, updated_at=now, error_message=error)
        self.active[ds_id] = None
        self._touch(ds_id, last_crawl_completed_at=now, error_message=error)
        if status == "completed":
            total = job["total_pages"]
            errors = total // 50
            excluded = len(self.datasources[ds_id]["exclude_paths"]) * 3
            self.stats[ds_id] = {
                "total": total + excluded,
                "synced": total - errors,
                "pending": 0,
                "error": errors,
                "excluded": excluded,
            }

    def advance(self) -> dict[str, int]:
        """Ten minutes pass: running crawls progress, some recrawls start, a site may appear."""
        self.clock += STEP
        counts = {"crawls_started": 0, "crawls_progressed": 0, "crawls_finished": 0}
        for ds_id in list(self.datasources):
            job = self._active_job(ds_id)
            if job is not None:
                self._step_job(ds_id, job, fail_rate=0.05)
                counts["crawls_progressed"] += 1
                counts["crawls_finished"] += job["status"] in TERMINAL
            elif self.datasources[ds_id]["status"] == "active" and self.rng.random() < 0.3:
                self.start_crawl(ds_id)
                counts["crawls_started"] += 1
        if self.rng.random() < 0.2:
            self.create_datasource(f"https://site{len(self.datasources)}.example.org")
            counts["datasources_created"] = 1
        return counts

    def _active_job(self, ds_id: str) -> dict[str, Any] | None:
        job_id = self.active.get(ds_id)
        return self._job(ds_id, job_id) if job_id else None

    def _job(self, ds_id: str, job_id: str) -> dict[str, Any] | None:
        return next((job for job in self.jobs.get(ds_id, []) if job["id"] == job_id), None)

    def detail(self, ds_id: str) -> dict[str, Any]:
        """`GET /crawl/{id}`: the datasource plus `page_stats` and `active_crawl_job`."""
        job = self._active_job(ds_id)
        active = None
        if job is not None:
            active = {name: job[name] for name in ACTIVE_FIELDS}
        return {
            **self.datasources[ds_id],
            "page_stats": dict(self.stats[ds_id]),
            "active_crawl_job": active,
        }

    def truth(self) -> dict[str, Any]:
        """Live datasources (detail form), deleted ones, and every job by id."""
        jobs = {job["id"]: job for jobs in self.jobs.values() for job in jobs}
        for dead in self.graveyard.values():
            jobs.update({job["id"]: job for job in dead["jobs"]})
        return {
            "datasources": {ds_id: self.detail(ds_id) for ds_id in self.datasources},
            "deleted": set(self.graveyard),
            "jobs": jobs,
        }

    def expected_rows(self) -> dict[str, int]:
        truth = self.truth()
        return {
            "datasources": len(truth["datasources"]) + len(truth["deleted"]),
            "crawl_jobs": len(truth["jobs"]),
        }

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
            # [I] cancel path unknown: api-notes says accept both
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
    """Documented ranges of the create/update bodies (api-notes §5.2)."""
    limit = body.get("page_limit")
    if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= 5000):
        return "body/page_limit must be >= 1 and <= 5000"
    hours = body.get("crawl_interval_hours")
    if hours is not None and (not isinstance(hours, int) or hours < 24):
        return "body/crawl_interval_hours must be >= 24"
    return None
