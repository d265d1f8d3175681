"""Outscraper's place in the unified model: `scrape_runs` mapping, completeness checks,
freshness columns and retention (read by the shared layers through `PROVIDER`)."""

from __future__ import annotations

from scrapesync.sources.common.provider import RunMapping, TotalCheck
from scrapesync.sources.outscraper.settings import (
    BASE_URL,
    REQUEST_EXPIRED,
    REQUEST_FAILURE,
    REQUEST_PENDING,
    REQUEST_SUCCESS,
    RESULT_RETENTION_HOURS,
    TERMINAL_TASK_STATUSES,
)

RUNS: tuple[RunMapping, ...] = (
    RunMapping(
        table="tasks",
        key="id",
        parent_id=None,
        state="status",
        # only SUCCESS is documented; the rest are the Celery states of its queue
        # (docs/outscraper.md#task-states)
        states={
            "PENDING": "pending",
            "RECEIVED": "pending",
            "STARTED": "running",
            "IN_PROGRESS": "running",
            "RETRY": "running",
            "SUCCESS": "succeeded",
            "FINISHED": "succeeded",
            "FAILURE": "failed",
            "FAILED": "failed",
            "REVOKED": "cancelled",
        },
        started_at="created",
        finished_at="updated",
        items_ok="quantity",
        items_failed=None,
        deleted="removed",
        source_ref=BASE_URL + "/tasks/{id}",
        finished_states=TERMINAL_TASK_STATUSES,
    ),
    RunMapping(
        table="requests",
        key="id",
        parent_id=None,
        state="status",
        states={
            REQUEST_PENDING: "pending",
            REQUEST_SUCCESS: "succeeded",
            REQUEST_FAILURE: "failed",
            REQUEST_EXPIRED: "expired",
        },
        # the API gives a request no timestamps: these are when scrapesync first saw it and
        # when it collected the results
        started_at="first_seen_at",
        finished_at="collected_at",
        items_ok="rows",
        items_failed=None,
        deleted=None,
        source_ref=BASE_URL + "/requests/{id}",
    ),
)

CHECKS: tuple[TotalCheck, ...] = (
    TotalCheck(
        "rows_per_task",
        parent="tasks",
        key="id",
        expected="quantity",
        child="task_results",
        fk="task_id",
        where="UPPER(p.status) = 'SUCCESS'",
        also="c.product_name = p.product_name",
    ),
    TotalCheck(
        "rows_per_request",
        parent="requests",
        key="id",
        expected="rows",
        child="request_results",
        fk="request_id",
        where="p.status = 'Success'",
    ),
)

# table -> the column that dates a record, for the lag (now - newest record)
FRESHNESS: dict[str, str] = {"tasks": "updated", "requests": "first_seen_at"}

# table -> how long the provider keeps the results of a finished async job (hours)
RETENTION_HOURS: dict[str, float] = {"requests": RESULT_RETENTION_HOURS}
