"""Oxylabs's place in the unified model: `scrape_runs` mapping, completeness checks,
freshness columns and retention (read by the shared layers through `PROVIDER`).

Only `jobs` is mapped to `scrape_runs`: `schedule_runs` rows are the same jobs (origin
`scheduler`, `batch_id` = `schedule:<schedule_id>:<run_id>`), so they appear once, with that
batch as the parent.
"""

from __future__ import annotations

from scrapesync.sources.common.provider import RunMapping, TotalCheck
from scrapesync.sources.oxylabs import settings

RUNS: tuple[RunMapping, ...] = (
    RunMapping(
        table="jobs",
        key="id",
        parent_id="batch_id",
        state="status",
        # Oxylabs reports `pending` for queued and running jobs alike; a `resubmitted` job
        # faulted and lives on as a new job (`resubmitted_as`)
        states={
            "pending": "pending",
            "done": "succeeded",
            "faulted": "failed",
            "resubmitted": "failed",
            "expired": "expired",
        },
        started_at="submitted_at",
        finished_at="finished_at",
        items_ok="result_pages",
        items_failed=None,
        deleted=None,
        source_ref=settings.BASE_URL + settings.JOB_PATH.replace("{job_id}", "{id}"),
    ),
)

CHECKS: tuple[TotalCheck, ...] = (
    TotalCheck(
        "pages_per_job",
        parent="jobs",
        key="id",
        expected="result_pages",
        child="results",
        fk="job_id",
        where="p.status = 'done'",
    ),
)

# table -> the column that dates a record, for the lag (now - newest record)
FRESHNESS: dict[str, str] = {"jobs": "submitted_at", "schedule_runs": "created_at"}

# table -> how long the provider keeps the results of a finished async job (hours)
RETENTION_HOURS: dict[str, float] = {"jobs": settings.RESULT_RETENTION_HOURS}
