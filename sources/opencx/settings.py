"""open.cx Crawl API constants (docs: shared/api-docs/004_f0d8f16166a2fb4d.txt, api-notes.md §5).

Evidence tags follow api-notes.md: [C] documented by open.cx, [I] inferred (the page that would
document it was not found). Every inferred path lives in `ENDPOINTS` and nowhere else, so a
correction is one line here.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple


class Endpoint(NamedTuple):
    method: str
    path: str
    evidence: str


BASE_URL: Final = "https://api.open.cx"

# THE endpoint table. open.cx's index page lists List Datasources, Start Crawl, Cancel Crawl and
# List Crawl Jobs, but their own pages were not found (api-notes §5.2): their paths are the ones
# api-notes infers from REST symmetry with the documented `POST /crawl`, `GET /crawl/{id}` and
# `GET /crawl/{id}/crawls/{jobId}`.
ENDPOINTS: Final[dict[str, Endpoint]] = {
    "list_datasources": Endpoint("GET", "/crawl", "[I] api-notes §5.2"),
    "get_datasource": Endpoint("GET", "/crawl/{datasource_id}", "[C] get-datasource"),
    "update_datasource": Endpoint("PATCH", "/crawl/{datasource_id}", "[C] update-datasource"),
    "list_crawl_jobs": Endpoint("GET", "/crawl/{datasource_id}/crawls", "[I] api-notes §5.2"),
    "start_crawl": Endpoint("POST", "/crawl/{datasource_id}/crawls", "[I] api-notes §5.2"),
    "get_crawl_job": Endpoint(
        "GET", "/crawl/{datasource_id}/crawls/{job_id}", "[C] get-crawl-job (seed doc)"
    ),
    # [I] the cancel path is unknown; api-notes suggests this or DELETE on the job
    "cancel_crawl": Endpoint(
        "POST", "/crawl/{datasource_id}/crawls/{job_id}/cancel", "[I] api-notes §5.2"
    ),
}

# `{items, next}` lists, cursor sent back as `?cursor=` [C OC-contacts convention].
ITEMS_SELECTOR: Final = "items"
NEXT_CURSOR_PATH: Final = "next"
CURSOR_PARAM: Final = "cursor"
# [I] Neither a page-size parameter nor its range is documented for the crawl lists, so none is
# sent unless `page_size` is set (Fastify drops unknown query parameters, an out-of-range value
# would be a 400).
PAGE_SIZE_PARAM: Final = "limit"
# [I] the contacts list filters with `updated_after`; the crawl-job list probably does too.
# Harmless if ignored (Fastify strips unknown query parameters): the source also filters and
# stops paging client-side.
UPDATED_AFTER_PARAM: Final = "updated_after"

# 100 requests per minute for standard endpoints [C OC-contacts].
DEFAULT_REQUESTS_PER_MINUTE: Final = 100
DEFAULT_PACING_WINDOW_SECONDS: Final = 60.0
# Re-read window before each datasource's watermark: jobs whose `updated_at` is a little older
# than the newest one already loaded but committed late. Not documented; merge makes it free.
DEFAULT_LOOKBACK_SECONDS: Final = 600

# Crawl job states [C OC-index]: pending -> scraping -> completed | failed | cancelled.
JOB_STATUSES: Final = ("pending", "scraping", "completed", "failed", "cancelled")
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
# Datasource status values settable with PATCH [C OC-update].
DATASOURCE_STATUSES: Final = ("active", "paused")

# Path-parameter UUID pattern, copied from the API reference [C seed]: versions 1-8, nil, max.
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
    # a fresh dict per column: dlt completes column hints in place
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
    # within one sync the latest read of a job wins
    "updated_at": _col("timestamp", timezone=True, dedup_sort="desc"),
    "duration_s": {"data_type": "double"},
    "is_terminal": {"data_type": "bool"},
    "is_deleted": {"data_type": "bool", "nullable": False},
}
