"""Typed request and response builders for open.cx's Crawl API (docs/opencx.md).

In the style of Airbyte's RequestBuilder/ResponseBuilder: a test states the requests it expects
and the pages it serves with these, so what varies between tests is all that a test spells
out. Paths and bodies are written here as docs/opencx.md describes them, not read from the
code's endpoint table: a wrong row in the table fails a test.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from dlt.common.configuration.container import Container
from dlt.common.pipeline import StateInjectableContext, TPipelineState
from dlt.extract import DltSource
from dlt.extract.exceptions import ResourceExtractionError
from httpmock import HttpRequest, HttpResponse

Json = dict[str, Any]
T0 = "2025-03-01T00:00:00Z"
# the fields of `active_crawl_job` in `GET /crawl/{id}` (docs/opencx.md#endpoints)
ACTIVE_JOB_NAMES = (
    "id",
    "status",
    "total_pages",
    "completed_pages",
    "new_pages",
    "updated_pages",
    "removed_pages",
    "unchanged_pages",
    "started_at",
)


def uuid_of(number: int) -> str:
    """A deterministic version-4 UUID (open.cx validates path ids against the UUID pattern)."""
    return str(uuid.UUID(int=number, version=4))


def at(minute: int, day: int = 1) -> str:
    """`2025-03-<day>T<hh>:<mm>:00Z`: timestamps in open.cx's ISO form."""
    return f"2025-03-{day:02d}T{minute // 60:02d}:{minute % 60:02d}:00Z"


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlRequests:
    """The requests scrapesync sends to open.cx, one constructor per endpoint."""

    @staticmethod
    def list_datasources(cursor: str | None = None, limit: int | None = None) -> HttpRequest:
        return HttpRequest("/crawl", query=_list_query(cursor, limit))

    @staticmethod
    def get_datasource(datasource_id: str) -> HttpRequest:
        return HttpRequest(f"/crawl/{datasource_id}", query={})

    @staticmethod
    def update_datasource(datasource_id: str, status: str) -> HttpRequest:
        return HttpRequest(f"/crawl/{datasource_id}", json_body={"status": status})

    @staticmethod
    def list_crawl_jobs(
        datasource_id: str,
        cursor: str | None = None,
        updated_after: str | None = None,
        limit: int | None = None,
    ) -> HttpRequest:
        query = _list_query(cursor, limit)
        if updated_after is not None:
            query["updated_after"] = updated_after
        return HttpRequest(f"/crawl/{datasource_id}/crawls", query=query)

    @staticmethod
    def start_crawl(datasource_id: str) -> HttpRequest:
        return HttpRequest(f"/crawl/{datasource_id}/crawls", query={})

    @staticmethod
    def get_crawl_job(datasource_id: str, job_id: str) -> HttpRequest:
        return HttpRequest(f"/crawl/{datasource_id}/crawls/{job_id}", query={})

    @staticmethod
    def cancel_crawl(datasource_id: str, job_id: str) -> HttpRequest:
        return HttpRequest(f"/crawl/{datasource_id}/crawls/{job_id}/cancel", query={})


def _list_query(cursor: str | None, limit: int | None) -> dict[str, str]:
    query: dict[str, str] = {}
    if cursor is not None:
        query["cursor"] = cursor
    if limit is not None:
        query["limit"] = str(limit)
    return query


# -- objects -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlJobBuilder:
    """A crawl job as `GET /crawl/{id}/crawls/{jobId}` documents it (every field present)."""

    id: str
    datasource_id: str
    status: str = "completed"
    created_at: str = T0
    updated_at: str = T0
    started_at: str | None = T0
    completed_at: str | None = T0
    total_pages: int | None = 10
    completed_pages: int = 10
    extra: Json = field(default_factory=dict)

    def running(self) -> CrawlJobBuilder:
        return replace(self, status="scraping", completed_at=None, completed_pages=4)

    def created(self, moment: str) -> CrawlJobBuilder:
        """Created, started, completed and updated at `moment` (a finished job)."""
        return replace(
            self, created_at=moment, started_at=moment, completed_at=moment, updated_at=moment
        )

    def updated(self, moment: str) -> CrawlJobBuilder:
        return replace(self, updated_at=moment)

    def with_status(self, status: str) -> CrawlJobBuilder:
        return replace(self, status=status)

    def with_extra(self, **fields: Any) -> CrawlJobBuilder:
        return replace(self, extra={**self.extra, **fields})

    def build(self) -> Json:
        return {
            "id": self.id,
            "datasource_id": self.datasource_id,
            "status": self.status,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "total_pages": self.total_pages,
            "completed_pages": self.completed_pages,
            "new_pages": 1,
            "updated_pages": 2,
            "removed_pages": 0,
            "unchanged_pages": self.completed_pages - 3,
            "error_message": "Crawler timed out" if self.status == "failed" else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **self.extra,
        }


@dataclass(frozen=True)
class DatasourceBuilder:
    """A website datasource: the list form, or the detail form of `GET /crawl/{id}`."""

    id: str
    detailed: bool = True
    active_job: CrawlJobBuilder | None = None
    extra: Json = field(default_factory=dict)

    def listed(self) -> DatasourceBuilder:
        """The form of the list, without `page_stats` and `active_crawl_job`."""
        return replace(self, detailed=False)

    def with_active_job(self, job: CrawlJobBuilder) -> DatasourceBuilder:
        return replace(self, active_job=job)

    def with_extra(self, **fields: Any) -> DatasourceBuilder:
        return replace(self, extra={**self.extra, **fields})

    def build(self) -> Json:
        item: Json = {
            "id": self.id,
            "url": f"https://{self.id[:8]}.example.com",
            "display_name": f"{self.id[:8]}.example.com",
            "status": "active",
            "page_limit": 100,
            "exclude_paths": ["/admin/*"],
            "include_paths": [],
            "crawl_interval_hours": 168,
            "last_crawl_started_at": T0,
            "last_crawl_completed_at": T0,
            "error_message": None,
            "created_at": T0,
            "updated_at": T0,
            **self.extra,
        }
        if self.detailed:
            item["page_stats"] = {"total": 12, "synced": 9, "pending": 1, "error": 1, "excluded": 1}
            item["active_crawl_job"] = _active(self.active_job)
        return item


def _active(job: CrawlJobBuilder | None) -> Json | None:
    if job is None:
        return None
    full = job.build()
    return {name: full[name] for name in ACTIVE_JOB_NAMES}


# -- responses ---------------------------------------------------------------------------------


def page(
    items: Sequence[DatasourceBuilder | CrawlJobBuilder], next_cursor: str | None
) -> HttpResponse:
    """One `{items, next}` list page."""
    return HttpResponse(json={"items": [item.build() for item in items], "next": next_cursor})


def item(builder: DatasourceBuilder | CrawlJobBuilder, status: int = 200) -> HttpResponse:
    return HttpResponse(status=status, json=builder.build())


def fastify_error(status: int, message: str, code: str | None = None) -> HttpResponse:
    """open.cx's error envelope `{statusCode, error, message}` (validation errors add `code`)."""
    names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    names[409] = "Conflict"
    body: Json = {"statusCode": status, "error": names.get(status, "Error"), "message": message}
    if code is not None:
        body["code"] = code
    return HttpResponse(status=status, json=body)


# -- running a source --------------------------------------------------------------------------


@dataclass
class Synced:
    """The rows one extraction of the source yielded, by table."""

    datasources: list[Json]
    crawl_jobs: list[Json]

    def job_ids(self) -> list[str]:
        """The crawl job ids, sorted (dlt interleaves the pages of a transformer freely)."""
        return sorted(row["id"] for row in self.crawl_jobs)


def extract(source: DltSource, state: Json) -> Synced:
    """Iterate `source` with `state` as the pipeline state (kept: pass it to the next sync).

    A source iterated outside a pipeline gets a throw-away state; injecting one is how a test
    runs two syncs in a row without a pipeline or a destination.
    """
    context = StateInjectableContext(state=cast(TPipelineState, state))
    try:
        with Container().injectable_context(context):
            rows = list(source)
    except ResourceExtractionError as error:
        # the resource's own error (a ProviderAPIError), as the runner reports it
        raise error.__cause__ or error from None
    # a crawl job row is the only one with a `datasource_id`
    return Synced(
        datasources=[row for row in rows if "datasource_id" not in row],
        crawl_jobs=[row for row in rows if "datasource_id" in row],
    )
