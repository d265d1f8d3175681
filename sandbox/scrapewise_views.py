"""What the Scrapewise sandbox shows: the API's DTOs of its account, and the truth a correct sync
must end up with. Functions of the account (sandbox/scrapewise_data.py), read by the routes.
"""

from __future__ import annotations

from typing import Any

from scrapesync.sandbox.scrapewise_data import TERMINAL, Run, ScrapewiseData, utc


def run_dto(run: Run, with_deleted: bool = False) -> dict[str, Any]:
    terminal = run.state in TERMINAL and run.finished is not None
    dto: dict[str, Any] = {
        "id": run.id,
        "jobId": run.id,
        "scraperId": run.scraper_id,
        "scraperName": run.scraper_name,
        "groupId": run.group_id,
        "state": run.state,
        "started": utc(run.started),
        "finished": utc(run.finished) if terminal and run.finished else None,
        "successLinks": run.success_links,
        "errorLinks": run.error_links,
        "launchedByCustomer": run.launched_by_customer,
        "itemsQuantity": run.success_links,
        "totalRequests": run.success_links + run.error_links,
        "attempted": run.success_links + run.error_links,
        "notAttempted": max(0, run.planned - run.success_links) if terminal else 0,
        "duration": int((run.finished - run.started).total_seconds())
        if terminal and run.finished
        else None,
        "stopReason": run.stop_reason,
        "errorMessage": run.error_message,
        "continuable": False,
        "costLines": [{"type": "LINKS", "quantity": run.success_links, "amount": 0.0}],
    }
    if with_deleted and run.deleted:
        dto["deleted"] = True  # [I] how withDeleted marks a soft-deleted run
    return dto


def scraper_summary(data: ScrapewiseData, scraper: dict[str, Any]) -> dict[str, Any]:
    """`/api/scraper/list` projection: no `schemaId` (docs/scrapewise.md#endpoints)."""
    last = data.latest_run(scraper["id"])
    return {
        "id": scraper["id"],
        "name": scraper["name"],
        "type": scraper["type"],
        "groupId": scraper["groupId"],
        "lastRun": utc(last.started) if last else None,
        "lastRunState": last.state if last else None,
    }


def scraper_dto(data: ScrapewiseData, scraper: dict[str, Any]) -> dict[str, Any]:
    fields = (
        ("price", "currency", "in_stock")
        if scraper["kind"] == "offer"
        else ("rating", "reviews", "seller")
    )
    return {
        **scraper_summary(data, scraper),
        "schemaId": None,
        "manual": False,
        "siteMap": False,
        "mapping": {},
        "shouldUseJavaScript": scraper["kind"] == "reviews",
        "createdAt": scraper["createdAt"],
        "updatedAt": scraper["createdAt"],
        "config": {
            "type": "SIMPLE",
            "timeout": 30,
            "itemsConfig": [{"name": name, "selector": f".{name}"} for name in fields],
            "postProcessRules": [],
            "sourceConfig": {
                "url": scraper["url"],
                "pagination": {"type": "URL_PAGE_PARAM", "param": "page", "max": 5},
            },
            "startType": "DAILY",
            "error": None,
        },
    }


def truth_of(data: ScrapewiseData) -> dict[str, Any]:
    enriched = {g.id for g in data.groups.values() if g.enriched_of}
    return {
        "jobs": {run.id: run_dto(run) for run in data.runs.values() if not run.deleted},
        "deleted_jobs": {run.id for run in data.runs.values() if run.deleted},
        "job_errors": {
            (run.id, link["url"])
            for run in data.terminal_runs()
            for link in data.errors.get(run.id, [])
        },
        "rows": {
            (row["_scraperJobStatusId"], row["_id"])
            for group, rows in data.rows.items()
            if group not in enriched
            for row in rows
            if data.runs[row["_scraperJobStatusId"]].state in TERMINAL
        },
        "enriched_rows": {(group, row["title"]) for group in enriched for row in data.rows[group]},
    }


def expected_rows(data: ScrapewiseData) -> dict[str, int]:
    truth = truth_of(data)
    expected = {
        "jobs": len(truth["jobs"]) + len(truth["deleted_jobs"]),
        "job_errors": len(truth["job_errors"]),
        "rows": len(truth["rows"]),
        "scrapers": len(data.scrapers),
    }
    if truth["enriched_rows"]:  # the table exists only once a merge was made
        expected["enriched_rows"] = len(truth["enriched_rows"])
    return expected
