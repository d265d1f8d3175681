"""The `request_results` resource: async API requests, collected before they expire."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
import pendulum
import pyarrow as pa
from dlt.common import logger

from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.outscraper.client import OutscraperClient, SkipPaginator
from scrapesync.sources.outscraper.results import ColumnTypes, batched_tables, request_rows
from scrapesync.sources.outscraper.settings import (
    REQUEST_EXPIRED,
    REQUEST_FAILURE,
    REQUEST_PATH,
    REQUEST_PENDING,
    REQUEST_SUCCESS,
    REQUESTS_PATH,
    RESULT_BATCH_ROWS,
    RESULT_RETENTION_HOURS,
)
from scrapesync.sources.outscraper.webhooks import WebhookInbox

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
# what a webhook's upper-case status (api-notes §3.4) means for a request
FINISHED_WEBHOOK_STATUSES = frozenset({"SUCCESS", "FAILURE", "FAILED", "FINISHED"})
DONE = frozenset({"collected", "failed", "expired"})


def request_results(
    api: OutscraperClient,
    request_ids: Sequence[str],
    inbox: WebhookInbox | None,
    discover: bool,
    max_pending_hours: float,
    types: ColumnTypes,
) -> Iterator[Any]:
    """Results of async API requests -> tables `request_results` and `requests`.

    * Primary key: `request_results` (`request_id`, `query_index`, `row_index`): one row per
      result of each query of the request; `requests`: `id`.
    * Write disposition: merge (delete-insert; `request_results` with merge key
      `request_id`, so a request's rows are always replaced as a whole).
    * Incremental: request ids come from webhook notifications (read first), `request_ids`
      and `GET /requests?type=finished`; the resource state remembers each request's fate,
      so a collected, failed or expired request is never read again.
    * Updates: a request is collected as soon as it reads `Success`: results are kept for
      only 4 hours, after which the status reads `Pending` again.
    * Deletes: expiry on Outscraper deletes nothing here: collected rows stay. A request that
      reads `Pending` after it was seen finished (webhook, listing) is recorded as `Expired`
      in `requests` with a warning; one still `Pending` after `max_pending_hours` too.
    * Late-arriving data: a request still `Pending` is read again on the next sync.
    """
    state: dict[str, dict[str, Any]] = dlt.current.resource_state().setdefault("requests", {})
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
    for request_id, hint in candidates.items():
        entry = state.setdefault(request_id, {"source": hint["source"]})
        if entry.get("fate") in DONE:
            continue
        entry["finished"] = bool(entry.get("finished") or hint.get("finished"))
        yield from _collect(api, request_id, entry, max_pending_hours, types)


def _finished_listing(api: OutscraperClient, state: dict[str, dict[str, Any]]) -> Iterator[str]:
    pages = api.pages(REQUESTS_PATH, {"type": "finished"}, SkipPaginator(), None)
    for page in pages:
        for item in page:
            request_id = str(item.get("id")) if isinstance(item, dict) else None
            if request_id and state.get(request_id, {}).get("fate") not in DONE:
                yield request_id


def _collect(
    api: OutscraperClient,
    request_id: str,
    entry: dict[str, Any],
    max_pending_hours: float,
    types: ColumnTypes,
) -> Iterator[Any]:
    now = pendulum.now("UTC")
    entry.setdefault("first_seen_at", now.isoformat())
    body = api.get_json(REQUEST_PATH.format(request_id=request_id))
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
        queries = (
            len(data) if isinstance(data, list) and any(isinstance(d, list) for d in data) else 1
        )
        row.update(collected_at=now, rows=counts["rows"], queries=queries)
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
    yield dlt.mark.with_hints(row, REQUESTS_TABLE, create_table_variant=True)


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
