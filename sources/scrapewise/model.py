"""Scrapewise's place in the unified model: `scrape_runs` mapping, completeness checks,
freshness columns and retention (read by the shared layers through `PROVIDER`)."""

from __future__ import annotations

from scrapesync.sources.common.provider import RunMapping, TotalCheck
from scrapesync.sources.scrapewise.settings import BASE_URL, JOB_ERRORS

RUNS: tuple[RunMapping, ...] = (
    RunMapping(
        table="jobs",
        key="id",
        parent_id="scraper_id",
        state="state",
        states={
            "PENDING": "pending",
            "RUNNING": "running",
            "COMPLETED": "succeeded",
            "FAILED": "failed",
            "STOPPED": "cancelled",
        },
        started_at="started",
        finished_at="finished",
        items_ok="success_links",
        items_failed="error_links",
        deleted="is_deleted",
        # Scrapewise has no single-run endpoint; the run's failed-links list is its record
        source_ref=BASE_URL + JOB_ERRORS.path.replace("{job_id}", "{id}"),
    ),
)

CHECKS: tuple[TotalCheck, ...] = (
    TotalCheck(
        "rows_per_run",
        parent="jobs",
        key="id",
        expected="items_quantity",
        child="rows",
        fk="job_id",
        where="p.state IN ('COMPLETED', 'FAILED', 'STOPPED') AND NOT COALESCE(p.is_deleted, FALSE)",
    ),
)

# table -> the column that dates a record, for the lag (now - newest record)
FRESHNESS: dict[str, str] = {"jobs": "started", "scrapers": "updated_at"}

# table -> how long the provider keeps the results of a finished async job (hours)
RETENTION_HOURS: dict[str, float] = {}
