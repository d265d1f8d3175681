"""open.cx's place in the unified model: `scrape_runs` mapping, completeness checks,
freshness columns and retention (read by the shared layers through `PROVIDER`)."""

from __future__ import annotations

from scrapesync.sources.common.provider import RunMapping, TotalCheck
from scrapesync.sources.opencx.settings import BASE_URL

RUNS: tuple[RunMapping, ...] = (
    RunMapping(
        table="crawl_jobs",
        key="id",
        parent_id="datasource_id",
        state="status",
        states={
            "pending": "pending",
            "scraping": "running",
            "completed": "succeeded",
            "failed": "failed",
            "cancelled": "cancelled",
        },
        started_at="started_at",
        finished_at="completed_at",
        items_ok="completed_pages",
        items_failed=None,
        deleted="is_deleted",
        source_ref=BASE_URL + "/crawl/{datasource_id}/crawls/{id}",
    ),
)

CHECKS: tuple[TotalCheck, ...] = ()

# table -> the column that dates a record, for the lag (now - newest record)
FRESHNESS: dict[str, str] = {"datasources": "updated_at", "crawl_jobs": "updated_at"}

# table -> how long the provider keeps the results of a finished async job (hours)
RETENTION_HOURS: dict[str, float] = {}
