"""Outscraper API constants and the endpoint table (the API as scrapesync uses it:
docs/outscraper.md).

`ENDPOINTS` is the one place an endpoint's method and path are written; the code reads them
from it. `evidence` says where each row comes from: `documented` (Outscraper's API reference),
`sdk` (Outscraper's official SDK, whose docstring cites the reference page) or `inferred`
(the reason is in docs/outscraper.md#what-scrapesync-infers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

BASE_URL: Final = "https://api.outscraper.cloud"

TASK_DOCS: Final = "https://docs.outscraper.com/endpoints/tasks-taskid"
REQUEST_DOCS: Final = "https://docs.outscraper.com/endpoints/requests-requestid"
TASKS_LIST_DOCS: Final = (
    "https://app.outscraper.com/api-docs#tag/Outscraper-Platform-UI/paths/~1tasks/get"
)
REQUESTS_LIST_DOCS: Final = "https://app.outscraper.com/api-docs#tag/Requests/paths/~1requests/get"


@dataclass(frozen=True)
class Endpoint:
    """One API call scrapesync makes.

    Attributes:
        name: how the code names it (`endpoint(name)`).
        method / path: the HTTP method and the path below `base_url` (`{...}` placeholders).
        pagination: how its pages are read (`none` for a single object).
        feeds: the tables or commands it feeds.
        evidence: `documented`, `sdk` or `inferred` (see the module docstring).
        reference: the public page that documents it, or the docs section that explains it.
    """

    name: str
    method: str
    path: str
    pagination: str
    feeds: str
    evidence: Literal["documented", "sdk", "inferred"]
    reference: str


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        "list_tasks",
        "GET",
        "/tasks",
        "keyset: `lastId` + `pageSize` -> `{tasks, has_more}`",
        "tasks",
        "sdk",
        TASKS_LIST_DOCS,
    ),
    Endpoint(
        "get_task",
        "GET",
        "/tasks/{task_id}",
        "none",
        "tasks (notified, summarised or vanished tasks), removed_tasks",
        "documented",
        TASK_DOCS,
    ),
    Endpoint(
        "restart_task",
        "PUT",
        "/tasks/{task_id}",
        "none",
        "`outscraper restart`",
        "documented",
        TASK_DOCS,
    ),
    Endpoint(
        "terminate_task",
        "DELETE",
        "/tasks/{task_id}",
        "none",
        "`outscraper terminate`",
        "documented",
        TASK_DOCS,
    ),
    Endpoint(
        "list_requests",
        "GET",
        "/requests",
        "offset: `skip` + `pageSize` -> JSON list; a short page is the last",
        "request_results (finished requests found by listing)",
        "sdk",
        REQUESTS_LIST_DOCS,
    ),
    Endpoint(
        "get_request",
        "GET",
        "/requests/{request_id}",
        "none",
        "request_results, requests",
        "documented",
        REQUEST_DOCS,
    ),
    Endpoint(
        "result_file",
        "GET",
        "{file_url}",
        "none: streamed, parsed in batches",
        "task_results",
        "inferred",
        "docs/outscraper.md#result-files",
    ),
)


def endpoint(name: str) -> Endpoint:
    """The `ENDPOINTS` row called `name`."""
    for row in ENDPOINTS:
        if row.name == name:
            return row
    raise KeyError(f"outscraper: no endpoint {name!r} in settings.ENDPOINTS")


TASKS_PATH: Final = endpoint("list_tasks").path
TASK_PATH: Final = endpoint("get_task").path
REQUESTS_PATH: Final = endpoint("list_requests").path
REQUEST_PATH: Final = endpoint("get_request").path

# `GET /tasks` pages with `lastId` + `pageSize` (the SDK's default is 10; no maximum is
# documented, the sandbox enforces 1..100 [I]).
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 100
# `GET /requests?type=finished` pages with `skip` + `pageSize` ("up to 100" in the SDK).
REQUESTS_PAGE_SIZE: Final = 100

# Only `SUCCESS` is documented; the queue behind tasks is Celery-like (`queue_task_id`), so the
# other terminal states are its usual ones [I, docs/outscraper.md#task-states]. Compared
# upper-case.
TASK_SUCCESS: Final = "SUCCESS"
TERMINAL_TASK_STATUSES: Final = frozenset({"SUCCESS", "FAILURE", "FAILED", "REVOKED", "FINISHED"})

# `/requests/{id}` statuses (docs/outscraper.md#request-states-and-retention); `Expired` is
# scrapesync's own verdict.
REQUEST_PENDING: Final = "Pending"
REQUEST_SUCCESS: Final = "Success"
REQUEST_FAILURE: Final = "Failure"
REQUEST_EXPIRED: Final = "Expired"
# "Each response is available for 4 hours after a request has been completed."
RESULT_RETENTION_HOURS: Final = 4
# A request never seen finished is polled this long, then recorded as expired: a lost or
# expired result reads `Pending` exactly like one still running
# (docs/outscraper.md#request-states-and-retention).
DEFAULT_MAX_PENDING_HOURS: Final = 24

# How a removed task answers `GET /tasks/{id}` is not documented: a 404, or an error message
# in a 2xx body that says so [I].
GONE_MESSAGE_PATTERN: Final = r"not found|removed|does not exist|no such task"

# Result files: rows per Arrow batch yielded to dlt, and bytes per network read.
RESULT_BATCH_ROWS: Final = 20_000
# `requests` rows handed to dlt per item (one item per request would cost dlt's per-item
# overhead once per request).
REQUEST_ROWS_BATCH: Final = 1000
# request ids per destination query asking which of them are already finished
DONE_QUERY_IDS: Final = 500
# async requests read at once; Outscraper documents no rate limit (docs/outscraper.md#limits)
DEFAULT_CONCURRENCY: Final = 8
MAX_CONCURRENCY: Final = 32
DOWNLOAD_CHUNK_BYTES: Final = 1 << 20

# Task fields kept as their own columns of `tasks` (the rest of `metadata` stays JSON).
TASK_FIELDS: Final = ("id", "user_id", "status", "queue_task_id", "created", "updated")
