"""Scrapewise sandbox: the scraper-api routes scrapesync uses, as documented (docs/scrapewise.md).

Faithful parts: Bearer `sw_live_...` keys (an `X-API-KEY` header alone gets 401), the RFC 7807
error envelope, 400 (never 404) for unknown ids, Spring pages with totals, a global per-key
token bucket answering 429 with `Retry-After`, runs moving PENDING -> RUNNING -> COMPLETED /
FAILED / STOPPED as the data advances (rows are written while a run is RUNNING), failed links,
merge with Idempotency-Key replay, ADR-012 preview tokens that expire after 5 minutes.

Inferred where the docs are silent (each marked [I] below; docs/scrapewise.md lists them under
"What scrapesync infers"): soft-deleted runs carry
`deleted: true` under `withDeleted=true`; the delete commit accepts the preview's `token` and
then checks it; the enriched sibling is a group named `<name>_enriched` in `group/list`.
"""

from __future__ import annotations

import random
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson

from scrapesync.sandbox.base import ProviderAPI, SandboxRequest, SandboxResponse
from scrapesync.sandbox.scrapewise_data import ScrapewiseData
from scrapesync.sandbox.scrapewise_query import (
    filter_rows,
    is_object_id,
    parse_filters,
    sort_rows,
    spring_page,
)
from scrapesync.sandbox.scrapewise_views import (
    expected_rows,
    run_dto,
    scraper_dto,
    scraper_summary,
    truth_of,
)

DEFAULT_KEY = "sw_live_sandbox.5f3c9a1e7d2b4c68"
PREFIX = "/api/scraper"
TOKEN_TTL = 300.0
# The real base URL's path: RFC 7807 `instance` is this plus the request's path.
BASE_PATH = "/api/scraper-api"
# The path of the request being answered, for the error envelope's `instance`.
_REQUEST_PATH: ContextVar[str] = ContextVar("scrapewise_request_path", default="")


@dataclass
class Bucket:
    """Token bucket of one API key (global, not per endpoint: docs/scrapewise.md#limits)."""

    rate: float
    burst: int
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ScrapewiseAPI(ProviderAPI):
    """Deterministic, evolving Scrapewise account.

    Args:
        groups: number of scraping groups (each with `scrapers_per_group` scrapers).
        scrapers_per_group: scrapers per group; their fields differ, titles (EANs) are shared.
        runs_per_scraper: terminal runs in the history before the first sync.
        seed: seed of the deterministic generator.
        api_keys: accepted Bearer tokens.
        features: plan features (`DATA_ENRICHMENT` unlocks merge).
        rate_limit: (requests per second, burst) per key; None switches the limit off.
        latency: seconds every request waits before it is answered (a network round trip).
    """

    name = "scrapewise"

    def __init__(
        self,
        groups: int = 2,
        scrapers_per_group: int = 2,
        runs_per_scraper: int = 4,
        seed: int = 11,
        api_keys: tuple[str, ...] = (DEFAULT_KEY,),
        features: tuple[str, ...] = ("DATA_ENRICHMENT",),
        rate_limit: tuple[float, int] | None = (500.0, 500),
        latency: float = 0.0,
    ) -> None:
        super().__init__()
        self.data = ScrapewiseData(random.Random(seed), groups, scrapers_per_group)
        self.data.seed_history(runs_per_scraper)
        self.api_keys = set(api_keys)
        self.features = set(features)
        self.rate_limit = rate_limit
        self.latency = latency
        self.buckets: dict[str, Bucket] = {}
        self.wall_offset = 0.0  # tests move the token clock forward with this
        self.idempotent: dict[tuple[str, str], SandboxResponse] = {}
        self.tokens: dict[str, tuple[str, float]] = {}
        self.idempotency_log: list[tuple[str, str | None]] = []  # (method, key) per write
        self.writes_applied = 0  # merges and deletes actually executed (not replayed)
        self._routes()

    def _routes(self) -> None:
        oid = r"(?P<id>[^/]+)"
        self.route("GET", f"{PREFIX}/load-history", self.load_history)
        self.route(
            "GET",
            f"{PREFIX}/load-history/group/(?P<group>[^/]+)/job/(?P<job>[^/]+)/errors",
            self.job_errors,
        )
        self.route("GET", f"{PREFIX}/list", self.scraper_list)
        self.route("GET", f"{PREFIX}/group/list", self.group_list)
        self.route("GET", f"{PREFIX}/data/group/{oid}", self.group_data)
        self.route("PUT", f"{PREFIX}/data/group/{oid}/merge", self.merge)
        self.route("POST", f"{PREFIX}/data/preview-delete", self.preview_delete)
        self.route("DELETE", f"{PREFIX}/data", self.delete_data)
        for method in ("GET", "POST"):  # SDK uses GET, the overview POST: accept both [I]
            self.route(method, f"{PREFIX}/{oid}/run", self.run_scraper)
            self.route(method, f"{PREFIX}/{oid}/stop", self.stop_scraper)
        self.route("GET", f"{PREFIX}/{oid}", self.scraper)

    # -- evolution and truth --------------------------------------------------------------
    def advance(self) -> dict[str, int]:
        """One hour passes: queued runs start, running runs end, every idle scraper runs."""
        return self.data.advance()

    def truth(self) -> dict[str, Any]:
        return truth_of(self.data)

    def expected_rows(self) -> dict[str, int]:
        return expected_rows(self.data)

    def source_options(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "api_key": sorted(self.api_keys)[0]}

    def now(self) -> float:
        return time.time() + self.wall_offset

    # -- HTTP plumbing --------------------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> SandboxResponse:
        """RFC 7807-style envelope (docs/scrapewise.md#errors); `instance` is the request path."""
        code = extra.pop("code", _CODES.get(status, "error"))
        body = {
            "type": f"https://scrapewise.ai/errors/{code.lower().replace('_', '-')}",
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": message,
            "instance": BASE_PATH + extra.pop("instance", _REQUEST_PATH.get()),
            "correlationId": f"req_{uuid.uuid4().hex[:12]}",
            "code": code,
            **extra,
        }
        headers = {"Retry-After": "1"} if status == 429 else {}
        return SandboxResponse.json(body, status, headers)

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        token = _REQUEST_PATH.set(request.path)
        try:
            return self._authorised(request)
        finally:
            _REQUEST_PATH.reset(token)

    def _authorised(self, request: SandboxRequest) -> SandboxResponse:
        key = _bearer(request)
        if key is None or key not in self.api_keys:
            return self.error(401, "Missing or invalid Authorization header.", code="unauthorized")
        if self.rate_limit:
            bucket = self.buckets.setdefault(
                key, Bucket(self.rate_limit[0], self.rate_limit[1], float(self.rate_limit[1]))
            )
            if not bucket.take():
                return self.error(429, "Rate limit exceeded for this customer.")
        return super().handle(request)

    def _idempotency(self, request: SandboxRequest) -> tuple[str | None, SandboxResponse | None]:
        key = request.header("idempotency-key")
        self.idempotency_log.append((request.method, key))
        if not key:
            return None, self.error(400, "Idempotency-Key header is required for this operation.")
        stored = self.idempotent.get((request.path, key))
        return key, stored

    # -- routes ---------------------------------------------------------------------------
    def load_history(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        try:
            filters = parse_filters(request.param("filters"))
        except ValueError as exc:
            return self.error(400, f"Malformed filters JSON: {exc}", code="INVALID_FILTER")
        for name in ("groupId", "scraperId"):  # "given both, the explicit parameter wins"
            if request.param(name):
                filters[name] = request.param(name)
        with_deleted = (request.param("withDeleted") or "false").lower() == "true"
        runs = [
            run_dto(run, with_deleted)
            for run in self.data.candidate_runs(filters)
            if (with_deleted or not run.deleted) and run.matches(filters)
        ]
        sort = request.query.get("sort") or ["started,desc"]
        return self._page(request, sort_rows(runs, sort))

    def _page(self, request: SandboxRequest, rows: list[dict[str, Any]]) -> SandboxResponse:
        try:
            page = int(request.param("page", "0") or 0)
            size = int(request.param("size", "20") or 20)
        except ValueError:
            return self.error(400, "page and size must be integers")
        if page < 0 or not 1 <= size <= 1000:
            return self.error(400, f"page must be >= 0 and size in 1..1000 (got {page}, {size})")
        return SandboxResponse.raw_json(orjson.dumps(spring_page(rows, page, size)))

    def job_errors(self, _request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        run = self.data.runs.get(args["job"])
        if run is None or run.group_id != args["group"]:
            return self.error(400, f"No run {args['job']} for this customer in this group.")
        return SandboxResponse.json(self.data.errors.get(run.id, []))

    def scraper_list(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        group = request.param("groupId")
        return SandboxResponse.json(
            [
                scraper_summary(self.data, scraper)
                for scraper in (
                    self.data.scrapers_of.get(group, []) if group else self.data.scrapers.values()
                )
                if not group or scraper["groupId"] == group
            ]
        )

    def scraper(self, _request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        scraper = self.data.scrapers.get(args["id"])
        if scraper is None:
            return self.error(400, f"Scraper {args['id']} does not exist for this customer.")
        return SandboxResponse.json(scraper_dto(self.data, scraper))

    def group_list(self, _request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        return SandboxResponse.json([group.dto() for group in self.data.groups.values()])

    def group_data(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        group = self.data.groups.get(args["id"])
        if group is None:
            return self.error(400, f"Group {args['id']} does not exist for this customer.")
        try:
            rows = filter_rows(self.data.rows.get(group.id, []), request.param("filters"))
        except ValueError as exc:
            return self.error(400, f"Malformed filters: {exc}", code="INVALID_FILTER")
        if (request.param("isLastRun") or "").lower() == "true":
            last = self.data.last_run_of_group(group.id)
            rows = [row for row in rows if row["_scraperJobStatusId"] == last]
        return self._page(request, sort_rows(rows, request.query.get("sort") or []))

    def merge(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        key, stored = self._idempotency(request)
        if stored is not None or key is None:
            return stored or self.error(400, "Idempotency-Key header is required.")
        group = self.data.groups.get(args["id"])
        if group is None:
            return self.error(400, f"Group {args['id']} does not exist for this customer.")
        if "DATA_ENRICHMENT" not in self.features:
            return self.error(
                402, "Your plan lacks the DATA_ENRICHMENT feature.", code="DATA_ENRICHMENT"
            )
        ids = request.query.get("scraperJobStatusIds", [])
        bad = [job for job in ids if not is_object_id(job)]
        if bad:  # no upfront validation: the failure surfaces as a 500 (docs/scrapewise.md#errors)
            return self.error(500, f"Invalid ObjectId: {bad[0]}", code="internal_error")
        merged = self.data.merge(group, ids)
        self.writes_applied += 1
        if merged == 0:
            response = self.error(
                422,
                "Zero rows merged: none of the runs is the latest COMPLETED run of its scraper, "
                "or their rows have no matching title.",
                code="NOTHING_MERGED",
            )
        else:
            response = SandboxResponse.json({"mergedItems": merged})
        self.idempotent[(request.path, key)] = response
        return response

    def _run_for_delete(self, request: SandboxRequest) -> tuple[Any, SandboxResponse | None]:
        job = request.param("scraperJobStatusId") or ""
        if not is_object_id(job):
            return None, self.error(400, f"scraperJobStatusId {job!r} is not a valid ObjectId.")
        run = self.data.runs.get(job)
        if run is None:
            return None, self.error(400, f"No run {job} for this customer.")
        return run, None

    def preview_delete(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        run, failed = self._run_for_delete(request)
        if failed:
            return failed
        token = str(uuid.uuid4())
        self.tokens[token] = (run.id, self.now() + TOKEN_TTL)
        rows = sum(
            1
            for row in self.data.rows.get(run.group_id, [])
            if row["_scraperJobStatusId"] == run.id
        )
        return SandboxResponse.json(
            {
                "token": token,
                "opName": "scrapewise_delete_scraper_data",
                "targetEntityId": run.id,
                "previewSummary": {
                    "entityName": run.id,
                    "entityType": "scraper_run_data",
                    "cascadeCounts": {"rows": rows},
                    "warnings": [
                        "Scraped product rows produced by this run will be permanently "
                        "deleted (irreversible)."
                    ],
                },
            }
        )

    def delete_data(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        key, stored = self._idempotency(request)
        if stored is not None or key is None:
            return stored or self.error(400, "Idempotency-Key header is required.")
        run, failed = self._run_for_delete(request)
        if failed:
            return failed
        token = request.param("token")
        if token is not None:  # [I] the commit checks the preview it names
            target, expires = self.tokens.get(token, ("", 0.0))
            if target != run.id:
                return self.error(400, "Unknown preview token.", code="PREVIEW_TOKEN_INVALID")
            if self.now() > expires:
                return self.error(
                    400, "The preview token expired; preview again.", code="PREVIEW_TOKEN_EXPIRED"
                )
            del self.tokens[token]
        self.data.delete_run_rows(run)
        self.writes_applied += 1
        response = SandboxResponse(204)
        self.idempotent[(request.path, key)] = response
        return response

    def run_scraper(self, _request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        scraper = self.data.scrapers.get(args["id"])
        if scraper is None:
            return self.error(400, f"Scraper {args['id']} does not exist for this customer.")
        if self.data.active_run(scraper["id"]):
            return self.error(400, "Scraper is disabled or already in RUNNING or PENDING state")
        self.data.start_run(scraper)
        return SandboxResponse.json({"firstJob": False})

    def stop_scraper(self, _request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        scraper = self.data.scrapers.get(args["id"])
        if scraper is None:
            return self.error(400, f"Scraper {args['id']} does not exist for this customer.")
        self.data.stop(scraper["id"])
        return SandboxResponse(200)


_CODES = {400: "bad_request", 401: "unauthorized", 402: "payment_required", 429: "rate_limited"}
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def _bearer(request: SandboxRequest) -> str | None:
    header = request.header("authorization") or ""
    if not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ").strip()
