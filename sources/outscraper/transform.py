"""Pure record transforms: Outscraper's tasks and request results -> scrapesync's rows.

No I/O and no dlt state here, so each is tested on plain values (tests/fast).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from scrapesync.sources.common.shapes import USER_PREFIX, path_hash
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.common.validation import undocumented
from scrapesync.sources.outscraper.settings import (
    TASK_FIELDS,
    TASK_SUCCESS,
    TERMINAL_TASK_STATUSES,
)

DOCUMENTED_FIELDS = frozenset((*TASK_FIELDS, "metadata", "results"))
# the position of a request result row, set by scrapesync
INDEX_FIELDS = frozenset(("query_index", "row_index"))


def is_terminal(status: Any) -> bool:
    """Whether a task status is final (compared upper-case: docs/outscraper.md#task-states)."""
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


def _per_query(data: list[Any]) -> list[Any]:
    """`data` as one list per query: nested by default, one flat list with `flat=true`
    (docs/outscraper.md#request-results)."""
    return data if any(isinstance(item, list) for item in data) else [data]


def query_count(data: Any) -> int:
    """How many queries a `/requests/{id}` `data` answers (a flat list counts as one)."""
    return len(_per_query(data)) if isinstance(data, list) else 1


def request_rows(data: Any) -> Iterator[dict[str, Any]]:
    """`/requests/{id}` `data`: one array per query (or one flat array) -> rows with indexes."""
    if not isinstance(data, list):
        return
    for query_index, rows in enumerate(_per_query(data)):
        for row_index, row in enumerate(rows if isinstance(rows, list) else [rows]):
            record = row if isinstance(row, dict) else {"value": row}
            yield {"query_index": query_index, "row_index": row_index, **_theirs(record)}


def _theirs(record: dict[str, Any]) -> dict[str, Any]:
    """A result's own `query_index` / `row_index` fields as `user_<name>` (shapes.py's rule):
    the row's position keeps its name."""
    if not INDEX_FIELDS.intersection(record):
        return record
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = key
        if key in INDEX_FIELDS:
            name = f"{USER_PREFIX}{key}"
            while name in record or name in out:
                name = f"{name}_{path_hash([key, name])}"
        out[name] = value
    return out


def flatten(
    prefix: str, value: Mapping[str, Any], into: dict[str, Any], path: tuple[str, ...] = ()
) -> None:
    """Nested objects -> `prefix__key` entries; lists and scalars stay values.

    A key holding `__` beside the same nested path (`a__b` and `a: {b}`) would share one
    entry: the second one takes `<name>_<h>` (shapes.py's hash of its path), so both stay.
    """
    for key, item in value.items():
        here = (*path, str(key))
        name = f"{prefix}__{key}" if prefix else str(key)
        if isinstance(item, Mapping):  # an empty object adds no column (README)
            flatten(name, item, into, here)
            continue
        if name in into:
            name = f"{name}_{path_hash(here)}"
        into[name] = item
