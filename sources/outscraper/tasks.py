"""The `tasks` and `task_results` resources (functions bound by `outscraper_source`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import dlt
import pendulum
import pyarrow as pa
from dlt.common import logger

from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.common.validation import check_times, undocumented
from scrapesync.sources.outscraper.client import KeysetPaginator, OutscraperClient, is_gone
from scrapesync.sources.outscraper.results import ColumnTypes, file_tables
from scrapesync.sources.outscraper.settings import (
    TASK_FIELDS,
    TASK_PATH,
    TASK_SUCCESS,
    TASKS_PATH,
    TERMINAL_TASK_STATUSES,
)
from scrapesync.sources.outscraper.webhooks import WebhookInbox

REMOVED_TASKS: Any = dlt.mark.make_hints(
    table_name="removed_tasks",
    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    primary_key="task_id",
    merge_key="task_id",
    columns={"removed_at": {"data_type": "timestamp"}},
)


DOCUMENTED_FIELDS = frozenset((*TASK_FIELDS, "metadata", "results"))


# `created` bounds the listing (`start_date`), `updated` tells a changed task
TASK_TIMES = ("created", "updated")


def is_terminal(status: Any) -> bool:
    return str(status or "").upper() in TERMINAL_TASK_STATUSES


def task_row(task: dict[str, Any]) -> dict[str, Any]:
    """A task as a `tasks` row: documented fields, metadata and a results summary."""
    metadata: dict[str, Any] = task["metadata"] if isinstance(task.get("metadata"), dict) else {}
    results = [r for r in task.get("results") or [] if isinstance(r, dict)]
    main = next((r for r in results if r.get("file_url")), results[0] if results else {})
    # undocumented fields are schema drift: they land as columns instead of vanishing
    return undocumented(task, DOCUMENTED_FIELDS) | {
        "id": str(task["id"]),
        "user_id": task.get("user_id"),
        "status": task.get("status"),
        "queue_task_id": task.get("queue_task_id"),
        "created": parse_datetime(task.get("created")),
        "updated": parse_datetime(task.get("updated")),
        "service_name": metadata.get("service_name"),
        "queries": metadata.get("queries"),
        "metadata": metadata,
        "product_name": main.get("product_name"),
        "quantity": main.get("quantity"),
        "results": results,
        "removed": False,
        "removed_at": None,
    }


def results_fingerprint(task: dict[str, Any]) -> str | None:
    """What identifies one delivery of a task's files; None when it has none (yet).

    A restart re-runs the task under the same id with a new queue id and new files; the query
    string is left out because a pre-signed link changes it on every read [I].
    """
    if str(task.get("status") or "").upper() != TASK_SUCCESS:
        return None
    urls = [
        urlsplit(r["file_url"])._replace(query="", fragment="").geturl()
        for r in task.get("results") or []
        if isinstance(r, dict) and r.get("file_url")
    ]
    return f"{task.get('queue_task_id')}|{'|'.join(urls)}" if urls else None


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


def removal_sql(tasks_table: str, removed_table: str) -> str:
    """Flag every task listed in `removed_tasks` (idempotent; run after each load)."""
    return (
        f"UPDATE {tasks_table} SET removed = TRUE, removed_at = r.removed_at "
        f"FROM {removed_table} AS r WHERE {tasks_table}.id = r.task_id "
        f"AND ({tasks_table}.removed IS DISTINCT FROM TRUE "
        f"OR {tasks_table}.removed_at IS DISTINCT FROM r.removed_at)"
    )
