"""open.cx Crawl API constants: base URL, the endpoint table, list parameters, limits, states.

The API as scrapesync uses it, with what is documented and what is inferred, is described in
docs/opencx.md. Every inferred path lives in `ENDPOINTS` and nowhere else, so a correction is one
line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

BASE_URL: Final = "https://api.open.cx"
# how errors name the setting that restricts a sync to some datasources
IDS_SETTING: Final = "`sources.opencx.datasource_ids` (env SOURCES__OPENCX__DATASOURCE_IDS)"
DOCS: Final = "https://docs.open.cx/api-reference/crawl"

Pagination = Literal["cursor", "none"]


@dataclass(frozen=True)
class Endpoint:
    """One row of the endpoint table.

    Attributes:
        name: how the code refers to it (`client.call(client, name)`).
        method: HTTP method.
        path: path below `base_url`, ids as `{datasource_id}` / `{job_id}`.
        pagination: `cursor` (`{items, next}` lists, docs/opencx.md#pagination) or `none`.
        feeds: the table or CLI action it serves.
        documented: True when open.cx documents the path; False when it is inferred
            (docs/opencx.md#what-scrapesync-infers).
        reference: the public page that documents it, or why the path was inferred.
    """

    name: str
    method: str
    path: str
    pagination: Pagination
    feeds: str
    documented: bool
    reference: str


# THE endpoint table. open.cx's Crawl index page lists List Datasources, Start Crawl, Cancel
# Crawl and List Crawl Jobs, but their own pages could not be found: their paths follow REST
# symmetry with the documented `POST /crawl`, `GET /crawl/{id}` and
# `GET /crawl/{id}/crawls/{jobId}` (docs/opencx.md#endpoints).
ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        name="list_datasources",
        method="GET",
        path="/crawl",
        pagination="cursor",
        feeds="datasources",
        documented=False,
        reference="REST symmetry with the documented POST /crawl",
    ),
    Endpoint(
        name="get_datasource",
        method="GET",
        path="/crawl/{datasource_id}",
        pagination="none",
        feeds="datasources (page_stats, active_crawl_job); crawl (the running job on a 409)",
        documented=True,
        reference=f"{DOCS}/get-datasource",
    ),
    Endpoint(
        name="update_datasource",
        method="PATCH",
        path="/crawl/{datasource_id}",
        pagination="none",
        feeds="pause, resume",
        documented=True,
        reference=f"{DOCS}/update-datasource",
    ),
    Endpoint(
        name="list_crawl_jobs",
        method="GET",
        path="/crawl/{datasource_id}/crawls",
        pagination="cursor",
        feeds="crawl_jobs",
        documented=False,
        reference="REST symmetry with the documented GET /crawl/{id}/crawls/{jobId}",
    ),
    Endpoint(
        name="start_crawl",
        method="POST",
        path="/crawl/{datasource_id}/crawls",
        pagination="none",
        feeds="crawl",
        documented=False,
        reference="REST symmetry: POST on the crawl-job collection",
    ),
    Endpoint(
        name="get_crawl_job",
        method="GET",
        path="/crawl/{datasource_id}/crawls/{job_id}",
        pagination="none",
        feeds="crawl_jobs (re-reads of running jobs); crawl --wait",
        documented=True,
        reference=f"{DOCS}/get-crawl-job",
    ),
    # the cancel path is unknown: `DELETE` on the job is the other candidate
    Endpoint(
        name="cancel_crawl",
        method="POST",
        path="/crawl/{datasource_id}/crawls/{job_id}/cancel",
        pagination="none",
        feeds="cancel",
        documented=False,
        reference="a guess; DELETE /crawl/{id}/crawls/{jobId} is the other candidate",
    ),
)


def endpoint(name: str) -> Endpoint:
    """The row of `ENDPOINTS` called `name` (KeyError for a name not in the table)."""
    for row in ENDPOINTS:
        if row.name == name:
            return row
    raise KeyError(f"opencx: no endpoint {name!r} in settings.ENDPOINTS")


# `{items, next}` lists, cursor sent back as `?cursor=`: open.cx's API-wide list convention
# (docs/opencx.md#pagination).
ITEMS_SELECTOR: Final = "items"
NEXT_CURSOR_PATH: Final = "next"
CURSOR_PARAM: Final = "cursor"
# Inferred: neither a page-size parameter nor its range is documented for the crawl lists, so
# none is sent unless `page_size` is set (Fastify drops unknown query parameters, an out-of-range
# value would be a 400; docs/opencx.md#what-scrapesync-infers).
PAGE_SIZE_PARAM: Final = "limit"
# Inferred: the contacts list filters with `updated_after`; the crawl-job list probably does
# too. Harmless if ignored (Fastify strips unknown query parameters): the source also filters
# and stops paging client-side (docs/opencx.md#what-scrapesync-infers).
UPDATED_AFTER_PARAM: Final = "updated_after"

# 100 requests per minute for standard endpoints (docs/opencx.md#limits).
DEFAULT_REQUESTS_PER_MINUTE: Final = 100
DEFAULT_PACING_WINDOW_SECONDS: Final = 60.0
# Re-read window before each datasource's watermark: jobs whose `updated_at` is a little older
# than the newest one already loaded but committed late. Not documented; merge makes it free.
DEFAULT_LOOKBACK_SECONDS: Final = 600
# Datasources read at once (`sources.opencx.concurrency`); every request still takes its turn
# in the client's pacing, so this overlaps latency and never raises the request rate.
DEFAULT_CONCURRENCY: Final = 8
MAX_CONCURRENCY: Final = 32
# Rows per item handed to dlt: one list per datasource would cost dlt's per-item overhead
# 10,000 times for 10,000 datasources.
BATCH_ROWS: Final = 1000
# Deleted datasource ids kept in state when none is configured (the rows stay in the
# destination; only a configured id's 404 needs to know it was deleted).
DELETED_KEPT: Final = 1000

# Crawl job states (docs/opencx.md#states): pending -> scraping -> completed | failed | cancelled.
JOB_STATUSES: Final = ("pending", "scraping", "completed", "failed", "cancelled")
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
# Datasource status values settable with PATCH (docs/opencx.md#states).
DATASOURCE_STATUSES: Final = ("active", "paused")

# Path-parameter UUID pattern, copied from the API reference: versions 1-8, nil, max
# (docs/opencx.md#errors: a malformed id is a 400).
UUID_PATTERN: Final = (
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-"
    r"[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$"
)

DATASOURCE_FIELDS: Final = (
    "id",
    "url",
    "display_name",
    "status",
    "page_limit",
    "exclude_paths",
    "include_paths",
    "crawl_interval_hours",
    "last_crawl_started_at",
    "last_crawl_completed_at",
    "error_message",
    "created_at",
    "updated_at",
)
PAGE_STATS_FIELDS: Final = ("total", "synced", "pending", "error", "excluded")
JOB_TIME_FIELDS: Final = ("started_at", "completed_at", "created_at", "updated_at")
ACTIVE_JOB_FIELDS: Final = (
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
JOB_FIELDS: Final = (
    "id",
    "datasource_id",
    "status",
    "started_at",
    "completed_at",
    "total_pages",
    "completed_pages",
    "new_pages",
    "updated_pages",
    "removed_pages",
    "unchanged_pages",
    "error_message",
    "created_at",
    "updated_at",
)
JOB_COUNTERS: Final = JOB_FIELDS[5:11]


def _col(data_type: str, **extra: Any) -> dict[str, Any]:
    # a fresh dict per column: dlt completes column hints in place (docs/dlt-behaviours.md,
    # Column hints)
    return {"data_type": data_type, **extra}


# Explicit column types: a first sync where a column is null everywhere (e.g. no job has
# finished yet) still creates it with the right type.
DATASOURCE_COLUMNS: Final[dict[str, Any]] = {
    "id": {"data_type": "text", "nullable": False},
    "url": _col("text"),
    "display_name": _col("text"),
    "status": _col("text"),
    "page_limit": _col("bigint"),
    # lists of path patterns stay one JSON value (no child tables)
    "exclude_paths": {"data_type": "json"},
    "include_paths": {"data_type": "json"},
    "crawl_interval_hours": _col("bigint"),
    "last_crawl_started_at": _col("timestamp", timezone=True),
    "last_crawl_completed_at": _col("timestamp", timezone=True),
    "error_message": _col("text"),
    "created_at": _col("timestamp", timezone=True),
    "updated_at": _col("timestamp", timezone=True),
    **{f"page_stats__{name}": _col("bigint") for name in PAGE_STATS_FIELDS},
    **{
        f"active_crawl_job__{name}": _col("timestamp", timezone=True)
        if name == "started_at"
        else _col("text" if name in ("id", "status") else "bigint")
        for name in ACTIVE_JOB_FIELDS
    },
    "is_deleted": {"data_type": "bool", "nullable": False},
    "deleted_at": _col("timestamp", timezone=True),
}
CRAWL_JOB_COLUMNS: Final[dict[str, Any]] = {
    "id": {"data_type": "text", "nullable": False},
    "datasource_id": {"data_type": "text", "nullable": False},
    "status": _col("text"),
    "started_at": _col("timestamp", timezone=True),
    "completed_at": _col("timestamp", timezone=True),
    **{name: _col("bigint") for name in JOB_COUNTERS},
    "error_message": _col("text"),
    "created_at": _col("timestamp", timezone=True),
    # within one sync the latest read of a job wins (docs/dlt-behaviours.md, Merge strategies:
    # delete-insert with dedup_sort)
    "updated_at": _col("timestamp", timezone=True, dedup_sort="desc"),
    "duration_s": {"data_type": "double"},
    "is_terminal": {"data_type": "bool"},
    "is_deleted": {"data_type": "bool", "nullable": False},
}
