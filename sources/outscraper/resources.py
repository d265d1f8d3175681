"""The bodies of Outscraper's resources (bound by `outscraper_source`) and its post-load step.

* `tasks` (+ `removed_tasks`): the task listing, each changed task once, removals confirmed.
* `task_results`: each finished task's result files, once per delivery.
* `request_results` (+ `requests`): async requests collected before their results expire.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
import pendulum
import pyarrow as pa
from dlt.common import logger

from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.common.partitions import map_bounded
from scrapesync.sources.common.statedb import StateDB
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.common.validation import check_times
from scrapesync.sources.outscraper.client import (
    KeysetPaginator,
    OutscraperClient,
    SkipPaginator,
    is_gone,
)
from scrapesync.sources.outscraper.columns import ColumnTypes, batched_tables
from scrapesync.sources.outscraper.results import file_tables
from scrapesync.sources.outscraper.settings import (
    DONE_QUERY_IDS,
    REQUEST_EXPIRED,
    REQUEST_FAILURE,
    REQUEST_PATH,
    REQUEST_PENDING,
    REQUEST_ROWS_BATCH,
    REQUEST_SUCCESS,
    REQUESTS_PATH,
    RESULT_BATCH_ROWS,
    RESULT_RETENTION_HOURS,
    TASK_PATH,
    TASKS_PATH,
)
from scrapesync.sources.outscraper.transform import (
    query_count,
    request_rows,
    results_fingerprint,
    task_row,
)
from scrapesync.sources.outscraper.webhooks import WebhookInbox

REMOVED_TASKS: Any = dlt.mark.make_hints(
    table_name="removed_tasks",
    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    primary_key="task_id",
    merge_key="task_id",
    columns={"removed_at": {"data_type": "timestamp"}},
)
REQUESTS_TABLE: Any = dlt.mark.make_hints(
    table_name="requests",
    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    primary_key="id",
    merge_key="id",
    columns={
        "first_seen_at": {"data_type": "timestamp"},
        "collected_at": {"data_type": "timestamp"},
        "expired_at": {"data_type": "timestamp"},
        "rows": {"data_type": "bigint"},
        "queries": {"data_type": "bigint"},
    },
)
# what a webhook's upper-case status (docs/outscraper.md#webhooks) means for a request
FINISHED_WEBHOOK_STATUSES = frozenset({"SUCCESS", "FAILURE", "FAILED", "FINISHED"})
DONE = frozenset({"collected", "failed", "expired"})


# `created` bounds the listing (`start_date`), `updated` tells a changed task
TASK_TIMES = ("created", "updated")


def tasks(
    api: OutscraperClient,
    page_size: int,
    task_query: str | None,
    start: pendulum.DateTime | None,
    inbox: WebhookInbox | None,
) -> Iterator[Any]:
    """Outscraper tasks (UI tasks) -> table `tasks` (and `removed_tasks`).

    * Primary key: `id` (the task id, e.g. `20211211132758c8e9`).
    * Write disposition: merge (delete-insert): a task's row is replaced when it changes.
    * Incremental: `GET /tasks` is read in full (keyset pages, `lastId`/`pageSize`) down to
      `start_date` (ids sort by creation time, so paging stops there); only tasks whose
      `updated`/`status` differ from the resource state are written. Tasks named by a webhook
      notification are read first (`GET /tasks/{id}`).
    * Updates: a task that changes (status, restart) is rewritten; a task not yet finished is
      read again on every sync until it is terminal.
    * Deletes: a known task missing from a complete listing is confirmed with
      `GET /tasks/{id}`; only a 404 (or a not-found message) marks it removed: a row in
      `removed_tasks`, and `tasks.removed = true` (post-load). A failed read removes nothing.
    * Late-arriving data: there is no watermark to miss: every sync sees the whole listing.
    """
    state = dlt.current.resource_state()
    known: dict[str, list[Any]] = state.setdefault("known", {})
    loaded = _loaded_files()
    seen: set[str] = set()
    notified = sorted(inbox.take("task")) if inbox else []
    for task_id in notified:
        if task_query and task_id not in known:
            continue  # outside the configured tag filter: the listing decides
        seen.add(task_id)
        yield from _confirmed(api, task_id, known, loaded)
    params: dict[str, Any] = {"pageSize": page_size}
    if task_query:
        params["query"] = task_query
    for item in _listing(api, params, start):
        task_id = str(item["id"])
        if task_id in seen:
            continue
        seen.add(task_id)
        if "results" not in item:  # a summary listing: read the task itself [I]
            yield from _confirmed(api, task_id, known, loaded)
        elif _changed(item, known, loaded):
            yield _remember(item, known)
    for task_id in [t for t in known if t not in seen and _in_scope(known[t], start)]:
        yield from _confirmed(api, task_id, known, loaded)


def _listing(
    api: OutscraperClient, params: dict[str, Any], start: pendulum.DateTime | None
) -> Iterator[dict[str, Any]]:
    for page in api.pages(TASKS_PATH, params, KeysetPaginator(), "tasks"):
        for item in page:
            check_times("outscraper", TASKS_PATH, item, TASK_TIMES, "task")
            created = parse_datetime(item.get("created"))
            if start and created and created < start:
                return  # newest first: everything after this is older than start_date
            yield item


def _loaded_files() -> dict[str, str]:
    resources = dlt.current.source_state().get("resources", {})
    files: dict[str, str] = resources.get("task_results", {}).get("files", {})
    return files


def _changed(task: dict[str, Any], known: dict[str, list[Any]], loaded: dict[str, str]) -> bool:
    task_id = str(task["id"])
    if known.get(task_id, [None])[:2] != [task.get("updated"), task.get("status")]:
        return True
    fingerprint = results_fingerprint(task)
    return fingerprint is not None and loaded.get(task_id) != fingerprint


def _remember(task: dict[str, Any], known: dict[str, list[Any]]) -> dict[str, Any]:
    known[str(task["id"])] = [task.get("updated"), task.get("status"), task.get("created")]
    return task_row(task)


def _in_scope(entry: list[Any], start: pendulum.DateTime | None) -> bool:
    created = parse_datetime(entry[2]) if len(entry) > 2 and entry[2] else None
    return start is None or created is None or created >= start


def _confirmed(
    api: OutscraperClient, task_id: str, known: dict[str, list[Any]], loaded: dict[str, str]
) -> Iterator[Any]:
    """Read one task; a task the API says is gone becomes a removal."""
    try:
        task = api.get_json(TASK_PATH.format(task_id=task_id))
        check_times("outscraper", TASK_PATH.format(task_id=task_id), task, TASK_TIMES, "task")
    except ProviderAPIError as error:
        if not is_gone(error):
            raise
        if known.pop(task_id, None) is not None:
            logger.warning(f"outscraper: task {task_id} was removed on Outscraper; marked removed")
            now = pendulum.now("UTC")
            yield dlt.mark.with_hints(
                {"task_id": task_id, "removed_at": now}, REMOVED_TASKS, create_table_variant=True
            )
        return
    if isinstance(task, dict) and task.get("id") is not None and _changed(task, known, loaded):
        yield _remember(task, known)


def task_results(
    task: dict[str, Any], api: OutscraperClient, types: ColumnTypes
) -> Iterator[pa.Table]:
    """Rows of each finished task's result files -> table `task_results`.

    * Primary key: (`task_id`, `file_index`, `row_number`); `product_name` names the product
      (`Google Maps Data`, ...): one table for every product, see the README.
    * Write disposition: merge (delete-insert) with merge key `task_id`: loading a task's
      files replaces every row the task had, so a restarted task leaves no leftovers.
    * Incremental: each task's files are downloaded once; the resource state keeps the
      delivery fingerprint (queue id + file paths) of what was loaded.
    * Updates: a restarted task that finishes again has a new fingerprint: its files are
      loaded again and replace the earlier rows.
    * Deletes: rows of a task removed on Outscraper are kept (the data was delivered); the
      task is flagged in `tasks.removed` / `removed_tasks`.
    * Late-arriving data: a task that finishes later is loaded by the sync that first sees
      it `SUCCESS`. Files are streamed (JSON or CSV, chosen from the content) in batches.
    """
    fingerprint = results_fingerprint(task) if "results" in task else None
    if fingerprint is None:
        return
    files: dict[str, str] = dlt.current.resource_state().setdefault("files", {})
    task_id = str(task["id"])
    if files.get(task_id) == fingerprint:
        return
    load_id = dlt.current.load_package_state()["load_id"]
    for index, result in enumerate(task["results"]):
        if not isinstance(result, dict) or not result.get("file_url"):
            continue
        fixed = {
            "_dlt_load_id": load_id,
            "task_id": task_id,
            "product_name": result.get("product_name"),
            "file_index": index,
        }
        logger.info(f"outscraper: loading result file {index} of task {task_id}")
        yield from file_tables(api.open_stream(result["file_url"]), fixed, types)
    files[task_id] = fingerprint


def request_results(
    api: OutscraperClient,
    request_ids: Sequence[str],
    inbox: WebhookInbox | None,
    discover: bool,
    max_pending_hours: float,
    types: ColumnTypes,
    concurrency: int = 1,
) -> Iterator[Any]:
    """Results of async API requests -> tables `request_results` and `requests`.

    * Primary key: `request_results` (`request_id`, `query_index`, `row_index`): one row per
      result of each query of the request; `requests`: `id`.
    * Write disposition: merge (delete-insert; `request_results` with merge key
      `request_id`, so a request's rows are always replaced as a whole).
    * Incremental: request ids come from webhook notifications (read first), `request_ids`
      and `GET /requests?type=finished`; a collected, failed or expired request is never read
      again: the resource state remembers requests still pending, and those finished in the
      last sync; older finished ones are known by their row in the destination's `requests`
      table (one query per `DONE_QUERY_IDS` ids), so the state does not grow with them.
      Requests are read `concurrency` at a time; result rows of many requests share one
      Arrow table.
    * Updates: a request is collected as soon as it reads `Success`: results are kept for
      only 4 hours, after which the status reads `Pending` again.
    * Deletes: expiry on Outscraper deletes nothing here: collected rows stay. A request that
      reads `Pending` after it was seen finished (webhook, listing) is recorded as `Expired`
      in `requests` with a warning; one still `Pending` after `max_pending_hours` too.
    * Late-arriving data: a request still `Pending` is read again on the next sync.
    """
    state: dict[str, dict[str, Any]] = dlt.current.resource_state().setdefault("requests", {})
    finished_store = _finished_store()
    if finished_store is not None:
        # finished in an earlier sync, whose package the runner loaded before this extract:
        # the destination's `requests` table remembers them from now on
        for request_id in [i for i, entry in state.items() if entry.get("fate") in DONE]:
            del state[request_id]
    candidates: dict[str, dict[str, Any]] = {}
    notified = inbox.take("request") if inbox else {}
    for request_id, status in notified.items():
        finished = status.upper() in FINISHED_WEBHOOK_STATUSES
        candidates[request_id] = {"source": "webhook", "finished": finished}
    for request_id in request_ids:
        candidates.setdefault(request_id, {"source": "config", "finished": False})
    for request_id, entry in state.items():
        if entry.get("fate") not in DONE:
            candidates.setdefault(request_id, {"source": entry.get("source", "state")})
    if discover:
        for item in _finished_listing(api, state):
            candidates.setdefault(item, {"source": "listing", "finished": True})
    unknown = [request_id for request_id in candidates if request_id not in state]
    for request_id in _finished_in(finished_store, unknown):
        del candidates[request_id]
    todo = []
    for request_id, hint in candidates.items():
        entry = state.setdefault(request_id, {"source": hint["source"]})
        if entry.get("fate") in DONE:
            continue
        entry["finished"] = bool(entry.get("finished") or hint.get("finished"))
        todo.append(request_id)
    yield from _collect_all(api, todo, state, max_pending_hours, types, concurrency)


def _finished_store() -> StateDB | None:
    """The destination as a SQL store, to ask which requests it already holds finished; None
    where it has none (e.g. files): then the state keeps every finished request, as before."""
    pipeline = dlt.current.pipeline()
    if pipeline.destination is None or not pipeline.default_schema_name:
        return None  # an extract without a destination (or a first run): nothing stored yet
    if "requests" not in pipeline.default_schema.tables:
        return None
    try:
        return StateDB.for_pipeline(pipeline, pipeline.dataset_name)
    except ValueError:
        return None


def _finished_in(store: StateDB | None, request_ids: list[str]) -> set[str]:
    """Which of `request_ids` the destination's `requests` table holds as finished, written
    by a load that completed."""
    found: set[str] = set()
    if store is None:
        return found
    for first in range(0, len(request_ids), DONE_QUERY_IDS):
        chunk = request_ids[first : first + DONE_QUERY_IDS]
        marks = ", ".join("?" for _ in chunk)
        # only rows of a completed load (`_dlt_loads.status = 0`): a load killed midway and
        # then discarded (its results rolled back) may have committed the request's row
        sql = (
            "SELECT r.id FROM requests AS r JOIN _dlt_loads AS l ON l.load_id = r._dlt_load_id "
            f"WHERE l.status = 0 AND r.status <> ? AND r.id IN ({marks})"
        )
        found.update(row["id"] for row in store.query(sql, [REQUEST_PENDING, *chunk]))
    return found


def _finished_listing(api: OutscraperClient, state: dict[str, dict[str, Any]]) -> Iterator[str]:
    pages = api.pages(REQUESTS_PATH, {"type": "finished"}, SkipPaginator(), None)
    for page in pages:
        for item in page:
            request_id = str(item.get("id")) if isinstance(item, dict) else None
            if request_id and state.get(request_id, {}).get("fate") not in DONE:
                yield request_id


def _collect_all(
    api: OutscraperClient,
    request_ids: list[str],
    state: dict[str, dict[str, Any]],
    max_pending_hours: float,
    types: ColumnTypes,
    concurrency: int,
) -> Iterator[Any]:
    """Read the requests `concurrency` at a time (the state is written here, in one thread);
    result rows go out in Arrow tables of up to `RESULT_BATCH_ROWS` rows across requests, and
    `requests` rows in lists, so dlt's per-item cost is not paid per request."""
    tables = _TableBatch()
    rows: list[dict[str, Any]] = []
    bodies = map_bounded(
        lambda request_id: api.get_json(REQUEST_PATH.format(request_id=request_id)),
        request_ids,
        concurrency,
    )
    for request_id, body in bodies:
        for item in _collect(request_id, body, state[request_id], max_pending_hours, types):
            if isinstance(item, pa.Table):
                yield from tables.add(item)
            else:
                rows.append(item)
        if len(rows) >= REQUEST_ROWS_BATCH:
            yield dlt.mark.with_hints(rows, REQUESTS_TABLE, create_table_variant=True)
            rows = []
    yield from tables.flush()
    if rows:
        yield dlt.mark.with_hints(rows, REQUESTS_TABLE, create_table_variant=True)


class _TableBatch:
    """Small Arrow tables joined into one of up to `RESULT_BATCH_ROWS` rows."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        self.tables.append(table)
        self.rows += table.num_rows
        if self.rows >= RESULT_BATCH_ROWS:
            yield from self.flush()

    def flush(self) -> Iterator[pa.Table]:
        tables, self.tables, self.rows = self.tables, [], 0
        if not tables:
            return
        try:
            yield pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            yield from tables  # columns whose types do not unify: as they are, one by one


def _collect(
    request_id: str,
    body: Any,
    entry: dict[str, Any],
    max_pending_hours: float,
    types: ColumnTypes,
) -> Iterator[Any]:
    """The result tables and the `requests` row of one request read; advances `entry`."""
    now = pendulum.now("UTC")
    entry.setdefault("first_seen_at", now.isoformat())
    status = str(body.get("status") if isinstance(body, dict) else "") or REQUEST_PENDING
    row: dict[str, Any] = {
        "id": request_id,
        "status": status,
        "source": entry["source"],
        "first_seen_at": parse_datetime(entry["first_seen_at"]),
    }
    if status == REQUEST_SUCCESS:
        data = body.get("data")
        counts = {"rows": 0}
        yield from _result_tables(request_id, data, counts, types)
        entry["fate"] = "collected"
        row.update(collected_at=now, rows=counts["rows"], queries=query_count(data))
    elif status == REQUEST_FAILURE:
        entry["fate"] = "failed"
    elif _expired(entry, now, max_pending_hours):
        entry["fate"] = "expired"
        row.update(status=REQUEST_EXPIRED, expired_at=now)
        why = (
            "it was seen finished, so its results expired on Outscraper (kept "
            f"{RESULT_RETENTION_HOURS} h) before they were collected"
            if entry["finished"]
            else f"it stayed Pending for more than {max_pending_hours} h"
        )
        logger.warning(
            f"outscraper: request {request_id} reads Pending again; {why}: recorded as "
            "Expired in `requests`; sync more often than every "
            f"{RESULT_RETENTION_HOURS} h (or run `scrapesync listen`) to collect results in time"
        )
    yield row


def _expired(entry: dict[str, Any], now: pendulum.DateTime, max_pending_hours: float) -> bool:
    if entry.get("finished"):
        return True
    first = parse_datetime(entry["first_seen_at"])
    return first is None or (now - first).total_seconds() > max_pending_hours * 3600


def _result_tables(
    request_id: str, data: Any, counts: dict[str, int], types: ColumnTypes
) -> Iterator[pa.Table]:
    fixed = {"_dlt_load_id": dlt.current.load_package_state()["load_id"], "request_id": request_id}
    for table in batched_tables(request_rows(data), fixed, types, RESULT_BATCH_ROWS):
        counts["rows"] += table.num_rows
        yield table


def removal_sql(tasks_table: str, removed_table: str) -> str:
    """Flag every task listed in `removed_tasks` (idempotent; run after each load)."""
    return (
        f"UPDATE {tasks_table} SET removed = TRUE, removed_at = r.removed_at "
        f"FROM {removed_table} AS r WHERE {tasks_table}.id = r.task_id "
        f"AND ({tasks_table}.removed IS DISTINCT FROM TRUE "
        f"OR {tasks_table}.removed_at IS DISTINCT FROM r.removed_at)"
    )


def post_load(pipeline: dlt.Pipeline) -> int:
    """Flag removed tasks in `tasks` and acknowledge the webhook notifications used.

    Both steps are idempotent, so a crash between the load and this call only delays them.
    """
    schema = pipeline.default_schema
    if "tasks" in schema.tables and "removed_tasks" in schema.tables:
        with pipeline.sql_client() as client:
            client.execute_sql(
                removal_sql(
                    client.make_qualified_table_name("tasks"),
                    client.make_qualified_table_name("removed_tasks"),
                )
            )
    resources = pipeline.state.get("sources", {}).get("outscraper", {}).get("resources", {})
    for name in ("tasks", "request_results"):
        WebhookInbox.acknowledge_from(resources.get(name, {}), pipeline)
    return 0
