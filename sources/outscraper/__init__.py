"""Outscraper: your tasks, their result files and your async API request results.

The API as scrapesync uses it (endpoints, auth, pagination, states, errors, limits, and what is
inferred) is described in docs/outscraper.md; the endpoint table is `settings.ENDPOINTS`.
In short: `GET /tasks` pages by keyset (`lastId` + `pageSize` -> `{tasks, has_more}`),
`GET /tasks/{id}` reads one task, `GET /requests/{id}` an async request's results (kept 4
hours, then the status reads `Pending` again), `GET /requests?type=finished` lists finished
requests; errors can arrive with HTTP 200 (`{"error": true, "errorMessage": ...}`); webhooks
are signed with `X-Hub-Signature-256`.

Tables (dataset `outscraper`):
* `tasks`: one row per task, primary key `id`; `removed` flags tasks removed on Outscraper.
* `removed_tasks`: when each removed task was found gone.
* `task_results`: the rows of every finished task's result files (all products, with
  `task_id` and `product_name`).
* `requests`: one row per async request: `Pending`, `Success`, `Failure` or `Expired`.
* `request_results`: the results of each request, flattened per query.

Webhook notifications stored by `scrapesync listen` (pipelines/listen.py) make the next sync
read the notified tasks and requests first; without them everything is found by polling.
Resource bodies live in resources.py, record transforms in transform.py, the HTTP client in
client.py; this module only wires them into dlt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dlt
from dlt.sources import DltResource

from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.outscraper.client import SPEC, OutscraperClient
from scrapesync.sources.outscraper.columns import ColumnTypes
from scrapesync.sources.outscraper.resources import request_results, task_results, tasks
from scrapesync.sources.outscraper.settings import (
    BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_PENDING_HOURS,
    DEFAULT_PAGE_SIZE,
    MAX_CONCURRENCY,
    MAX_PAGE_SIZE,
)
from scrapesync.sources.outscraper.webhooks import WebhookInbox

DELETE_INSERT: Any = {"disposition": "merge", "strategy": "delete-insert"}
# Result rows reach a load package once per task (or request) and are numbered uniquely, so the
# staging dedup by primary key (a window over every row: a 50 MB file's merge runs out of the
# runner's 80 MB DuckDB budget with it) is skipped: `deduplicated` tells dlt so
# (docs/dlt-behaviours.md, the merge option `deduplicated` skips the staging dedup). A load job
# replayed after a crash would then double its rows (docs/dlt-behaviours.md, a load job replayed
# after SIGKILL duplicates rows); the runner discards such an interrupted package instead and
# reads its changes again (`finish_pending`).
DELETE_INSERT_DEDUPLICATED: Any = {**DELETE_INSERT, "deduplicated": True}
TASK_COLUMNS: Any = {
    "metadata": {"data_type": "json"},
    "results": {"data_type": "json"},
    "queries": {"data_type": "json"},
    "removed": {"data_type": "bool"},
    "removed_at": {"data_type": "timestamp"},
    "created": {"data_type": "timestamp"},
    "updated": {"data_type": "timestamp"},
}


@dlt.source(name="outscraper")
def outscraper_source(
    api_key: str = dlt.secrets.value,
    base_url: str = BASE_URL,
    start_date: str | None = None,
    task_query: str | None = None,
    request_ids: Sequence[str] | None = None,
    discover_requests: bool = True,
    page_size: int = DEFAULT_PAGE_SIZE,
    max_pending_hours: float = DEFAULT_MAX_PENDING_HOURS,
    use_webhooks: bool = True,
    webhook_dir: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    stats: RequestStats | None = None,
) -> list[DltResource]:
    """Outscraper tasks with their result files, and async request results.

    Args:
        api_key: Outscraper API key (sent as `X-API-KEY`; also the webhook signing key).
        base_url: API root; point it at the sandbox or a proxy.
        start_date: ISO date(-time); tasks created before it are not synced.
        task_query: only tasks matching this tag search (`GET /tasks?query=`).
        request_ids: async request ids to collect, besides those discovered.
        discover_requests: also collect requests listed by `GET /requests?type=finished`.
        page_size: tasks per `GET /tasks` page (1..100).
        max_pending_hours: a request never seen finished is given up (recorded `Expired`)
            after this many hours of `Pending`.
        use_webhooks: read the notifications stored by `scrapesync listen` first.
        webhook_dir: directory of the notification store (default: under dlt's data dir).
        concurrency: async requests read at once (1..32). There is no `shard` option: which
            requests are pending lives in dlt's pipeline state, one blob per pipeline, which
            concurrent shards would overwrite (docs/outscraper.md#many-requests).
        stats: request counters to fill (the runner passes one).
    """
    if not api_key or not str(api_key).strip():
        raise ValueError(f"outscraper: no API key: {SPEC.auth_hint()}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"outscraper: page_size={page_size} is outside 1..{MAX_PAGE_SIZE}: fix "
            "`sources.outscraper.page_size` (env SOURCES__OUTSCRAPER__PAGE_SIZE)"
        )
    if max_pending_hours < 0:
        raise ValueError("outscraper: `sources.outscraper.max_pending_hours` must be >= 0")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(
            f"outscraper: concurrency={concurrency} is outside 1..{MAX_CONCURRENCY}: fix "
            "`sources.outscraper.concurrency` (env SOURCES__OUTSCRAPER__CONCURRENCY)"
        )
    ids = [request_ids] if isinstance(request_ids, str) else list(request_ids or [])
    api = OutscraperClient(api_key, base_url, stats)
    inbox = WebhookInbox(webhook_dir) if use_webhooks else None
    start = parse_datetime(start_date) if start_date else None
    task_resource = dlt.resource(
        tasks,
        name="tasks",
        primary_key="id",
        write_disposition=DELETE_INSERT,
        columns=TASK_COLUMNS,
    )(api, page_size, task_query, start, inbox)
    results_resource = dlt.transformer(
        task_results,
        data_from=task_resource,
        name="task_results",
        primary_key=("task_id", "file_index", "row_number"),
        merge_key="task_id",
        write_disposition=DELETE_INSERT_DEDUPLICATED,
    )(api, ColumnTypes("task_results"))
    requests_resource = dlt.resource(
        request_results,
        name="request_results",
        primary_key=("request_id", "query_index", "row_index"),
        merge_key="request_id",
        write_disposition=DELETE_INSERT_DEDUPLICATED,
    )(
        api,
        [str(i) for i in ids if str(i).strip()],
        inbox,
        discover_requests,
        max_pending_hours,
        ColumnTypes("request_results"),
        concurrency,
    )
    return [task_resource, results_resource, requests_resource]
