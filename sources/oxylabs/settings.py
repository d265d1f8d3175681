"""Oxylabs Web Scraper API constants (docs: shared/api-docs/003_5eeb3e2c2bad4c24.txt,
api-notes.md §4)."""

from typing import Final

BASE_URL: Final = "https://data.oxylabs.io"
BATCH_PATH: Final = "/v1/queries/batch"
JOB_PATH: Final = "/v1/queries/{job_id}"
RESULTS_PATH: Final = "/v1/queries/{job_id}/results"
CALLBACKER_IPS_PATH: Final = "/v1/info/callbacker_ips"
SCHEDULES_PATH: Final = "/v1/schedules"
SCHEDULE_PATH: Final = "/v1/schedules/{schedule_id}"
SCHEDULE_RUNS_PATH: Final = "/v1/schedules/{schedule_id}/runs"

# "Scraper APIs supports submitting up to 5,000 query or url parameter values within a single
# batch request" (push-pull batch docs).
MAX_BATCH: Final = 5000
# Only these two may be lists in a batch; "All other parameters should have singular values".
LIST_PARAMS: Final = ("query", "url")
# Job parameters the docs and the SDK name (api-notes §4.2); others are passed through as is.
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
# Too Many Retries" (api-notes §4.7). 612 jobs are worth resubmitting, 613 ones are not (Oxylabs
# already retried them many times), unless the user asks.
CODE_RETRY_FREE: Final = 612
CODE_TOO_MANY_RETRIES: Final = 613

# Collection defaults. Oxylabs documents submission rates per plan (10..100 jobs/s, api-notes
# §4.8) but no rate for status and result requests; 16 requests in flight and 50 requests/s
# stay well inside the smallest paid plan. Both are options.
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
# results of a finished push-pull job stay retrievable for 24 hours (docs/oxylabs.md, "Results")
RESULT_RETENTION_HOURS: Final = 24
