"""Scrapewise API constants and the endpoint table (the API as used: docs/scrapewise.md).

Every route scrapesync calls is one row of `ENDPOINTS`, and the code reads its method and
path from there, so a correction is one line here. `documented` says whether Scrapewise's
own pages (or its official SDK) give the route; the rows that are not say why they were
inferred (docs/scrapewise.md#what-scrapesync-infers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from dlt.sources.helpers.rest_client.typing import HTTPMethod

# "Paths like `/api/key/whoami` mean .../api/scraper-api/api/key/whoami" (docs/scrapewise.md#auth)
BASE_URL: Final = "https://portal.scrapewise.ai/api/scraper-api"


@dataclass(frozen=True)
class Endpoint:
    """One route of the Scrapewise API as scrapesync calls it.

    Attributes:
        name: short name used in code and docs.
        method: HTTP method.
        path: path below `BASE_URL`, with `{placeholders}` for ids.
        pagination: how its lists are paged (docs/scrapewise.md#pagination).
        feeds: the table or CLI action it serves.
        documented: True when Scrapewise's docs or SDK give the route as written here.
        source: the public page it comes from, or why it is inferred.
    """

    name: str
    method: HTTPMethod
    path: str
    pagination: str
    feeds: str
    documented: bool
    source: str

    def url_path(self, **ids: str) -> str:
        """The path with its `{placeholders}` filled."""
        return self.path.format(**ids)


JOBS_PAGE: Final = "https://docs.scrapewise.ai/rest-api/jobs"
DATA_PAGE: Final = "https://docs.scrapewise.ai/rest-api/data"
GROUPS_PAGE: Final = "https://docs.scrapewise.ai/rest-api/groups"
SDK: Final = "official Python SDK `scrapewise` 0.1.0"
SPRING_PAGES: Final = "Spring page (`page` 0-based, `size`, `sort`; `totalPages`)"
BARE_ARRAY: Final = "none (a bare JSON array)"
SINGLE: Final = "none (one object)"

LOAD_HISTORY: Final = Endpoint(
    "load_history", "GET", "/api/scraper/load-history", SPRING_PAGES, "table `jobs`", True,
    JOBS_PAGE,
)  # fmt: skip
JOB_ERRORS: Final = Endpoint(
    "job_errors", "GET", "/api/scraper/load-history/group/{group_id}/job/{job_id}/errors",
    BARE_ARRAY, "table `job_errors`", True, JOBS_PAGE,
)  # fmt: skip
SCRAPER_LIST: Final = Endpoint(
    "scraper_list", "GET", "/api/scraper/list", BARE_ARRAY, "table `scrapers`", True, SDK
)
SCRAPER: Final = Endpoint(
    "scraper", "GET", "/api/scraper/{scraper_id}", SINGLE,
    "table `scrapers` (config summary)", True, f"{JOBS_PAGE} and the {SDK}",
)  # fmt: skip
GROUP_LIST: Final = Endpoint(
    "group_list", "GET", "/api/scraper/group/list", BARE_ARRAY,
    "table `enriched_rows` (finds each group's `_enriched` sibling)", True, GROUPS_PAGE,
)  # fmt: skip
GROUP_DATA: Final = Endpoint(
    "group_data", "GET", "/api/scraper/data/group/{group_id}", SPRING_PAGES,
    "tables `rows` (one run, filtered on its id) and `enriched_rows`", True, DATA_PAGE,
)  # fmt: skip
MERGE: Final = Endpoint(
    "merge", "PUT", "/api/scraper/data/group/{group_id}/merge", SINGLE,
    "action `scrapesync scrapewise merge`", True, JOBS_PAGE,
)  # fmt: skip
PREVIEW_DELETE: Final = Endpoint(
    "preview_delete", "POST", "/api/scraper/data/preview-delete", SINGLE,
    "action `scrapesync scrapewise delete-run-data` (step 1)", True, JOBS_PAGE,
)  # fmt: skip
DELETE_DATA: Final = Endpoint(
    "delete_data", "DELETE", "/api/scraper/data", SINGLE,
    "action `scrapesync scrapewise delete-run-data` (step 2)", True, JOBS_PAGE,
)  # fmt: skip
# The SDK runs with GET; the overview page names POST. GET is what the SDK verified live.
RUN: Final = Endpoint(
    "run", "GET", "/api/scraper/{scraper_id}/run", SINGLE, "action `scrapesync scrapewise run`",
    True, f"{SDK} (https://docs.scrapewise.ai/rest-api/overview says POST)",
)  # fmt: skip
# Only the vendor's MCP tool description documents stop ("GET or POST", empty 200 body).
STOP: Final = Endpoint(
    "stop", "POST", "/api/scraper/{scraper_id}/stop", SINGLE,
    "action `scrapesync scrapewise stop`", False,
    "inferred: the vendor's MCP tool `stop_scraper` describes it, no REST page gives it",
)  # fmt: skip

# THE endpoint table.
ENDPOINTS: Final = (
    LOAD_HISTORY,
    JOB_ERRORS,
    SCRAPER_LIST,
    SCRAPER,
    GROUP_LIST,
    GROUP_DATA,
    MERGE,
    PREVIEW_DELETE,
    DELETE_DATA,
    RUN,
    STOP,
)

# Spring Pageable `size` is "capped server-side" without a number (docs/scrapewise.md#pagination);
# the SDK sends 100. 1000 is inferred as the cap; larger asks are refused before any call.
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
# Per-run requests (failed links, rows) run on this many threads at once. The rate limit is
# global per customer (docs/scrapewise.md#limits), so this is a bound, not a throughput knob.
DEFAULT_CONCURRENCY: Final = 16
# Rows per item handed to dlt: one small list per run or scope would cost dlt's per-item
# overhead once per partition.
BATCH_ROWS: Final = 1000
# dlt's retrying session pools 50 connections per host (docs/dlt-behaviours.md, retrying
# session and its connection pool): more threads would wait for a connection.
MAX_CONCURRENCY: Final = 50

# Run state machine (docs/scrapewise.md#run-states): PENDING -> RUNNING -> COMPLETED | FAILED |
# STOPPED.
ACTIVE_STATES: Final = frozenset({"PENDING", "RUNNING"})
TERMINAL_STATES: Final = frozenset({"COMPLETED", "FAILED", "STOPPED"})
# load-history is newest first by default; asked for explicitly so the early stop is safe.
HISTORY_SORT: Final = "started,desc"
# Rows of one run: `_scraperJobStatusId` tags every row with its run (data page example).
# Filtering on it is inferred from the Mongo-style filter syntax
# (docs/scrapewise.md#what-scrapesync-infers). A completed run's rows do not change, so this
# order (and the row index taken from it) is stable.
RUN_ROW_FIELD: Final = "_scraperJobStatusId"
ROWS_SORT: Final = ("_scrapedAt,asc", "_id,asc")
ENRICHED_ROWS_SORT: Final = ("_id,asc",)
# Server metadata of a row: the docs' `_scrapedAt`, or the SDK's `_sw_run_date` (+ time).
SCRAPED_AT_FIELDS: Final = ("_scrapedAt", "_sw_run_date")
ENRICHED_SUFFIX: Final = "_enriched"
# ADR-012 preview tokens live 5 minutes (jobs page, "Delete a run's data"); a small margin
# keeps the commit from racing the expiry on a slow link.
PREVIEW_TTL_SECONDS: Final = 300
PREVIEW_SAFETY_SECONDS: Final = 10
# MongoDB ObjectId: 24 hex characters (docs/scrapewise.md#ids). Merge has no upfront validation
# and answers 500 for a malformed id, so ids are checked before the call.
OBJECT_ID_PATTERN: Final = r"[0-9a-fA-F]{24}"
