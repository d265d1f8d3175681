"""Outscraper API constants (docs: shared/api-docs/002_bd7da514d360c8bd.txt, api-notes.md §3)."""

from typing import Final

BASE_URL: Final = "https://api.outscraper.cloud"
TASKS_PATH: Final = "/tasks"
TASK_PATH: Final = "/tasks/{task_id}"
REQUESTS_PATH: Final = "/requests"
REQUEST_PATH: Final = "/requests/{request_id}"

# `GET /tasks` pages with `lastId` + `pageSize` (the SDK's default is 10; no maximum is
# documented, the sandbox enforces 1..100 [I]).
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 100
# `GET /requests?type=finished` pages with `skip` + `pageSize` ("up to 100", api-notes §3.3).
REQUESTS_PAGE_SIZE: Final = 100

# Only `SUCCESS` is documented; the queue behind tasks is Celery-like (`queue_task_id`), so the
# other terminal states are its usual ones [I, api-notes §3.2]. Compared upper-case.
TASK_SUCCESS: Final = "SUCCESS"
TERMINAL_TASK_STATUSES: Final = frozenset({"SUCCESS", "FAILURE", "FAILED", "REVOKED", "FINISHED"})

# `/requests/{id}` statuses (api-notes §3.3); `Expired` is scrapesync's own verdict.
REQUEST_PENDING: Final = "Pending"
REQUEST_SUCCESS: Final = "Success"
REQUEST_FAILURE: Final = "Failure"
REQUEST_EXPIRED: Final = "Expired"
# "Each response is available for 4 hours after a request has been completed."
RESULT_RETENTION_HOURS: Final = 4
# A request never seen finished is polled this long, then recorded as expired: a lost or
# expired result reads `Pending` exactly like one still running (api-notes §3.3).
DEFAULT_MAX_PENDING_HOURS: Final = 24

# How a removed task answers `GET /tasks/{id}` is not documented: a 404, or an error message
# in a 2xx body that says so [I].
GONE_MESSAGE_PATTERN: Final = r"not found|removed|does not exist|no such task"

# Result files: rows per Arrow batch yielded to dlt, and bytes per network read.
RESULT_BATCH_ROWS: Final = 20_000
DOWNLOAD_CHUNK_BYTES: Final = 1 << 20

# Task fields kept as their own columns of `tasks` (the rest of `metadata` stays JSON).
TASK_FIELDS: Final = ("id", "user_id", "status", "queue_task_id", "created", "updated")
