"""Oxylabs Web Scraper API (push-pull and Scheduler): base URL, endpoint table, limits, hints.

The API as scrapesync uses it, with the provider's documentation for each fact, is described
in docs/oxylabs.md. Every path lives in `ENDPOINTS` and nowhere else, so a correction is one
row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

BASE_URL: Final = "https://data.oxylabs.io"

DOCS_PUSH_PULL: Final = (
    "https://developers.oxylabs.io/products/web-scraper-api/integration-methods/push-pull"
)
DOCS_BATCH: Final = (
    "https://developers.oxylabs.io/scraper-apis/web-scraper-api/integration-methods/push-pull-batch"
)
DOCS_SCHEDULER: Final = "https://developers.oxylabs.io/products/web-scraper-api/features/scheduler"


@dataclass(frozen=True)
class Endpoint:
    """One row of the endpoint table.

    Attributes:
        name: how the code names it (`path("get_results")`).
        method: HTTP method.
        path: path below `base_url`, `{placeholders}` filled by the caller.
        pagination: how a complete read is made (none of Oxylabs' answers is paginated).
        feeds: the tables (or the action) its answers go to.
        documented: True when the provider documents the endpoint, False when inferred.
        reference: the provider's page (or the docs/oxylabs.md section) that says so.
    """

    name: str
    method: str
    path: str
    pagination: str
    feeds: str
    documented: bool
    reference: str


# THE endpoint table (docs/oxylabs.md#endpoints). Push-pull job ids are 19-digit strings;
# Scheduler ids are JSON integers above 2^53 (docs/oxylabs.md#scheduler).
ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        "submit_batch",
        "POST",
        "/v1/queries/batch",
        "none: up to 5,000 `query` or `url` values in one request",
        "jobs, submissions (`scrapesync oxylabs submit`)",
        True,
        DOCS_BATCH,
    ),
    Endpoint(
        "get_job",
        "GET",
        "/v1/queries/{job_id}",
        "none: one job",
        "jobs (status of jobs whose results go to cloud storage)",
        True,
        DOCS_PUSH_PULL + "#check-job-status",
    ),
    Endpoint(
        "get_results",
        "GET",
        "/v1/queries/{job_id}/results",
        "none: every page of the job in one body; 204 while pending",
        "results, jobs",
        True,
        DOCS_PUSH_PULL + "#retrieve-job-content",
    ),
    Endpoint(
        "callbacker_ips",
        "GET",
        "/v1/info/callbacker_ips",
        "none",
        "the callback intake's sender allow-list (`scrapesync listen`)",
        True,
        DOCS_PUSH_PULL + "#get-notifier-ip-address-list",
    ),
    Endpoint(
        "list_schedules",
        "GET",
        "/v1/schedules",
        "none: an unpaginated list of ids",
        "schedules, schedule_runs",
        True,
        DOCS_SCHEDULER,
    ),
    Endpoint(
        "get_schedule",
        "GET",
        "/v1/schedules/{schedule_id}",
        "none: one schedule with its stats",
        "schedules",
        True,
        DOCS_SCHEDULER,
    ),
    Endpoint(
        "list_schedule_runs",
        "GET",
        "/v1/schedules/{schedule_id}/runs",
        "none: every run of the schedule",
        "schedule_runs, results (the runs' jobs are collected like submitted ones)",
        True,
        DOCS_SCHEDULER + " (response shape: docs/oxylabs.md#scheduler)",
    ),
)


def endpoint(name: str) -> Endpoint:
    """The row called `name` (a KeyError names the rows that exist)."""
    for row in ENDPOINTS:
        if row.name == name:
            return row
    raise KeyError(f"oxylabs: no endpoint {name!r}; known: {[e.name for e in ENDPOINTS]}")


BATCH_PATH: Final = endpoint("submit_batch").path
JOB_PATH: Final = endpoint("get_job").path
RESULTS_PATH: Final = endpoint("get_results").path
CALLBACKER_IPS_PATH: Final = endpoint("callbacker_ips").path
SCHEDULES_PATH: Final = endpoint("list_schedules").path
SCHEDULE_PATH: Final = endpoint("get_schedule").path
SCHEDULE_RUNS_PATH: Final = endpoint("list_schedule_runs").path

# "up to 5,000 query or url parameter values within a single batch request" (docs/oxylabs.md#
# limits)
MAX_BATCH: Final = 5000
# Only these two may be lists in a batch; "All other parameters should have singular values".
LIST_PARAMS: Final = ("query", "url")
# Job parameters the docs and the SDK name (docs/oxylabs.md#endpoints); others pass through.
KNOWN_PARAMS: Final = (
    "source",
    "parse",
    "render",
    "geo_location",
    "domain",
    "locale",
    "pages",
    "start_page",
    "limit",
    "user_agent_type",
    "callback_url",
    "storage_type",
    "storage_url",
    "context",
    "client_notes",
    "parser_type",
    "parsing_instructions",
    "browser_instructions",
    "content_encoding",
    "xhr",
    "markdown",
)
JOB_STATUSES: Final = ("pending", "done", "faulted")
# documented fields of one page of `results`; others are schema drift (new columns)
RESULT_FIELDS: Final = (
    "content",
    "created_at",
    "updated_at",
    "page",
    "url",
    "job_id",
    "status_code",
    "type",
    "parser_type",
)
# 612 "Undefined Internal Error: the job failed; retry at no extra cost"; 613 "Faulted After
# Too Many Retries" (docs/oxylabs.md#errors). 612 jobs are worth resubmitting, 613 ones are not
# (Oxylabs already retried them many times), unless the user asks.
CODE_RETRY_FREE: Final = 612
CODE_TOO_MANY_RETRIES: Final = 613
FAULT_CODES: Final = (CODE_RETRY_FREE, CODE_TOO_MANY_RETRIES)

# Collection defaults. Oxylabs documents submission rates per plan (10..100 jobs/s) but no rate
# for status and result requests (docs/oxylabs.md#limits); 16 requests in flight and 50
# requests/s stay well inside the smallest paid plan. Both are options.
DEFAULT_CONCURRENCY: Final = 16
DEFAULT_REQUESTS_PER_SECOND: Final = 50.0
# `x-ratelimit-<name>-remaining: 0` has no documented reset header; the plans are per second,
# so a paused client waits this long before the next request (configurable).
DEFAULT_RATELIMIT_WINDOW: Final = 1.0
DEFAULT_MAX_RESUBMITS: Final = 1
# Callbacker IP list cache lifetime (seconds) for the callback intake.
CALLBACKER_IPS_TTL: Final = 3600.0
# Marker put into `client_notes` so a callback of a job whose submission answer was lost still
# tells which journal batch it belongs to.
TAG_PREFIX: Final = "scrapesync:"
# results of a finished push-pull job stay retrievable for at least 24 hours
# (docs/oxylabs.md#limits)
RESULT_RETENTION_HOURS: Final = 24
# the journal writes job changes in transactions of at most this many jobs while collecting
JOURNAL_CHUNK: Final = 500

# -- table hints ----------------------------------------------------------------------------
MERGE: Final[Any] = {"disposition": "merge", "strategy": "delete-insert"}
# Explicit column types: a first sync where a column is null everywhere (no job finished yet)
# still creates it with the right type.
JOBS_COLUMNS: Final[dict[str, Any]] = {
    "id": {"data_type": "text"},
    "query": {"data_type": "text"},
    "url": {"data_type": "text"},
    "source": {"data_type": "text"},
    "callback_at": {"data_type": "timestamp"},
    "submitted_at": {"data_type": "timestamp"},
    "finished_at": {"data_type": "timestamp"},
    "fault_reason": {"data_type": "text"},
    "result_pages": {"data_type": "bigint"},
    "resubmitted_as": {"data_type": "text"},
    "params": {"data_type": "json"},
    "fault_code": {"data_type": "bigint"},
    # the journal's change counter: of two rows of one job in a load, the newest wins
    # (docs/dlt-behaviours.md, merge strategies: dedup_sort)
    "_version": {"data_type": "bigint", "dedup_sort": "desc"},
}
RESULTS_COLUMNS: Final[dict[str, Any]] = {
    "job_id": {"data_type": "text"},
    "page": {"data_type": "bigint"},
    "content": {"data_type": "text"},
    "status_code": {"data_type": "bigint"},
    "query": {"data_type": "text"},
    "source": {"data_type": "text"},
    "parser_type": {"data_type": "text"},
}
RUNS_COLUMNS: Final[dict[str, Any]] = {
    "schedule_id": {"data_type": "bigint"},
    "run_id": {"data_type": "bigint"},
    "job_id": {"data_type": "text"},
    "result_created_at": {"data_type": "timestamp"},
}
SUBMISSIONS_COLUMNS: Final[dict[str, Any]] = {
    "params": {"data_type": "json"},
    "note": {"data_type": "text"},
    "sent_at": {"data_type": "timestamp"},
    "answered_at": {"data_type": "timestamp"},
}
SCHEDULES_COLUMNS: Final[dict[str, Any]] = {
    "schedule_id": {"data_type": "bigint"},
    # a schedule no longer listed is deleted (docs/dlt-behaviours.md, merge: hard_delete)
    "_deleted": {"data_type": "bool", "hard_delete": True},
}
