"""Scrapewise API constants (docs: shared/api-docs/001_836702f77cae84d5.txt, api-notes.md §2)."""

from typing import Final

# api-notes §2.1: "Paths like `/api/key/whoami` mean .../api/scraper-api/api/key/whoami"
BASE_URL: Final = "https://portal.scrapewise.ai/api/scraper-api"

LOAD_HISTORY_PATH: Final = "/api/scraper/load-history"
JOB_ERRORS_PATH: Final = "/api/scraper/load-history/group/{group_id}/job/{job_id}/errors"
SCRAPER_LIST_PATH: Final = "/api/scraper/list"
SCRAPER_PATH: Final = "/api/scraper/{scraper_id}"
RUN_PATH: Final = "/api/scraper/{scraper_id}/run"
STOP_PATH: Final = "/api/scraper/{scraper_id}/stop"
GROUP_LIST_PATH: Final = "/api/scraper/group/list"
GROUP_DATA_PATH: Final = "/api/scraper/data/group/{group_id}"
MERGE_PATH: Final = "/api/scraper/data/group/{group_id}/merge"
PREVIEW_DELETE_PATH: Final = "/api/scraper/data/preview-delete"
DELETE_DATA_PATH: Final = "/api/scraper/data"

# Spring Pageable `size`: "capped server-side" without a number (api-notes §2.4); the SDK
# sends 100. 1000 is the cap the emulator checklist suggests [I]; larger asks are refused.
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
# Per-run requests (failed links, rows) run on this many threads at once. The rate limit is
# global per customer (api-notes §2.3), so this is a bound, not a throughput knob to max out.
DEFAULT_CONCURRENCY: Final = 16
MAX_CONCURRENCY: Final = 50  # dlt's retrying session pools 50 connections per host

# Run state machine (api-notes §2.5): PENDING -> RUNNING -> COMPLETED | FAILED | STOPPED.
ACTIVE_STATES: Final = frozenset({"PENDING", "RUNNING"})
TERMINAL_STATES: Final = frozenset({"COMPLETED", "FAILED", "STOPPED"})
# load-history is newest first by default; asked for explicitly so the early stop is safe.
HISTORY_SORT: Final = "started,desc"
# Rows of one run: `_scraperJobStatusId` tags every row with its run (SW-data example). Filtering
# on it is inferred from the Mongo-style filter syntax (api-notes §2.7 [I]). A completed run's
# rows do not change, so this order (and the row index taken from it) is stable.
RUN_ROW_FIELD: Final = "_scraperJobStatusId"
ROWS_SORT: Final = ("_scrapedAt,asc", "_id,asc")
# Server metadata keys of a row (api-notes §2.6: `_`-prefixed keys plus the SDK's `_sw_*`).
SCRAPED_AT_FIELDS: Final = ("_scrapedAt", "_sw_run_date")
ENRICHED_SUFFIX: Final = "_enriched"
# ADR-012 preview tokens live 5 minutes (SW-seed, "Delete a run's data"); a small margin
# keeps the commit from racing the expiry on a slow link.
PREVIEW_TTL_SECONDS: Final = 300
PREVIEW_SAFETY_SECONDS: Final = 10
# MongoDB ObjectId: 24 hex characters (api-notes §2.5). Merge has no upfront validation and
# answers 500 for a malformed id, so ids are checked before the call.
OBJECT_ID_PATTERN: Final = r"[0-9a-fA-F]{24}"
