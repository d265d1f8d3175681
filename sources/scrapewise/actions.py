"""Scrapewise actions (merge, two-call delete, run, stop) and the after-load upkeep.

The actions are the Python API behind `scrapesync scrapewise ...`; they use the same client
(retries, error type) as the sync. Writes carry an `Idempotency-Key` made once per call, so
dlt's retries of that call resend the same key and Scrapewise replays instead of repeating.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError, malformed_item
from scrapesync.sources.scrapewise.client import check_object_ids, id_path
from scrapesync.sources.scrapewise.settings import (
    DELETE_DATA,
    MERGE,
    PREVIEW_DELETE,
    PREVIEW_SAFETY_SECONDS,
    PREVIEW_TTL_SECONDS,
    RUN,
    STOP,
)

MERGE_ADVICE = {
    402: "your Scrapewise plan lacks the DATA_ENRICHMENT feature, which merging needs; "
    "upgrade the plan, then merge again",
    422: "nothing was merged: each run must be the latest COMPLETED run of its scraper, and "
    "the runs' rows must share `title` values (a stable id such as an EAN); check the "
    "runs in the `jobs` table",
}


def merge_runs(
    client: ProviderRESTClient,
    group_id: str,
    job_ids: Sequence[str],
    idempotency_key: str | None = None,
) -> int:
    """Merge runs into the group's enriched dataset (`PUT .../merge`); returns `mergedItems`."""
    group = check_object_ids([group_id], "group id", "GROUP_ID", "merge")[0]
    jobs = check_object_ids(job_ids, "run id", "JOB_ID", "merge")
    if not jobs:
        raise ValueError("scrapewise: merge needs at least one run id (JOB_ID)")
    key = idempotency_key or str(uuid.uuid4())
    try:
        response = client.request(
            id_path(MERGE, "merge", group_id=group),
            method=MERGE.method,
            params={"scraperJobStatusIds": jobs},
            headers={"Idempotency-Key": key},
        )
    except ProviderAPIError as exc:
        advice = MERGE_ADVICE.get(exc.status or 0)
        if advice is None:
            raise
        raise ProviderAPIError(
            exc.provider, exc.method, exc.path, exc.status, exc.detail, advice
        ) from exc
    return int(response.json().get("mergedItems", 0))


@dataclass(frozen=True)
class DeletePreview:
    """What the preview call said, and when its 5-minute token was minted (monotonic s)."""

    job_id: str
    token: str
    entity_type: str
    cascade_counts: dict[str, Any]
    warnings: list[str]
    minted_at: float = field(default_factory=time.monotonic)

    def seconds_left(self, now: Callable[[], float] = time.monotonic) -> float:
        return self.minted_at + PREVIEW_TTL_SECONDS - now()

    def describe(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.cascade_counts.items()) or "none given"
        lines = [f"Delete the scraped rows of run {self.job_id} ({self.entity_type})."]
        lines.append(f"  cascade counts: {counts}")
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)


def preview_delete(client: ProviderRESTClient, job_id: str) -> DeletePreview:
    """Step 1 of the two-call delete: `POST .../preview-delete` mints a 5-minute token and a
    summary (docs/scrapewise.md#limits)."""
    job = check_object_ids([job_id], "run id", "JOB_ID", "delete-run-data")[0]
    params = {"scraperJobStatusId": job}
    body = client.request(PREVIEW_DELETE.path, method=PREVIEW_DELETE.method, params=params).json()
    summary = body.get("previewSummary") if isinstance(body, dict) else None
    summary = {} if summary is None else summary
    problem = _preview_problem(body, summary)
    if problem:
        raise malformed_item(
            "scrapewise",
            PREVIEW_DELETE.path,
            problem,
            PREVIEW_DELETE.method,
            hint="nothing was deleted; retry later",
        )
    return DeletePreview(
        job_id=job,
        token=str(body["token"]),
        entity_type=str(summary.get("entityType", "scraper_run_data")),
        cascade_counts=dict(summary.get("cascadeCounts") or {}),
        warnings=[str(w) for w in summary.get("warnings") or []],
    )


def _preview_problem(body: Any, summary: Any) -> str | None:
    """Why a preview answer is not the documented object (None when it is one)."""
    if not isinstance(body, dict):
        return f"the preview is a JSON {type(body).__name__}, not an object"
    if not body.get("token") or not isinstance(body["token"], (str, int)):
        return "the preview has no token"
    if not isinstance(summary, dict):
        return f"the preview's previewSummary is a {type(summary).__name__}, not an object"
    counts, warnings = summary.get("cascadeCounts"), summary.get("warnings")
    if counts is not None and not isinstance(counts, dict):
        return f"the preview's cascadeCounts is a {type(counts).__name__}, not an object"
    if warnings is not None and not isinstance(warnings, list):
        return f"the preview's warnings is a {type(warnings).__name__}, not a list"
    return None


def commit_delete(
    client: ProviderRESTClient,
    preview: DeletePreview,
    idempotency_key: str | None = None,
    now: Callable[[], float] = time.monotonic,
) -> None:
    """Step 2: `DELETE /api/scraper/data` within the token's life, with an Idempotency-Key.

    Refuses (sending nothing) without a preview or once the token is (nearly) expired. The
    token is sent along so Scrapewise can check it (inferred: the docs name `?token=` for the
    scraper and group deletes; for this route they only say a commit without a preview
    deletes unconfirmed, which scrapesync never does; docs/scrapewise.md#what-scrapesync-infers).
    """
    if not isinstance(preview, DeletePreview):
        raise TypeError("scrapewise: delete needs the DeletePreview returned by preview_delete")
    if preview.seconds_left(now) < PREVIEW_SAFETY_SECONDS:
        raise ValueError(
            f"scrapewise: the delete preview of run {preview.job_id} expired (tokens live "
            f"{PREVIEW_TTL_SECONDS // 60} minutes); nothing was deleted: preview again"
        )
    client.request(
        DELETE_DATA.path,
        method=DELETE_DATA.method,
        params={"scraperJobStatusId": preview.job_id, "token": preview.token},
        headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
    )


def run_scraper(client: ProviderRESTClient, scraper_id: str) -> bool:
    """Queue a run (`GET /api/scraper/{id}/run`, the SDK's verb); returns `firstJob`."""
    scraper = check_object_ids([scraper_id], "scraper id", "SCRAPER_ID", "run")[0]
    body = client.request(id_path(RUN, "run", scraper_id=scraper), method=RUN.method).json()
    return bool(body.get("firstJob")) if isinstance(body, dict) else False


def stop_scraper(client: ProviderRESTClient, scraper_id: str) -> None:
    """Stop the scraper's active run: RUNNING or PENDING ends STOPPED, synchronously."""
    scraper = check_object_ids([scraper_id], "scraper id", "SCRAPER_ID", "stop")[0]
    path = id_path(STOP, "stop", scraper_id=scraper)
    client.request(path, method=STOP.method)  # 200, empty body


def remove_run_rows(pipeline: dlt.Pipeline, job_id: str) -> int:
    """Delete a run's rows from the destination (after the provider deleted them)."""
    job = check_object_ids([job_id], "run id", "JOB_ID", "delete-run-data")[0]
    if "rows" not in _tables(pipeline):
        return 0
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("rows")
        count = client.execute_sql(f"SELECT count(*) FROM {table} WHERE job_id = %s", job)
        client.execute_sql(f"DELETE FROM {table} WHERE job_id = %s", job)
    return int(count[0][0]) if count else 0


def _tables(pipeline: dlt.Pipeline) -> set[str]:
    return set(pipeline.default_schema.tables) if pipeline.default_schema_name else set()


MARK_VANISHED_SQL = """
UPDATE {jobs} SET is_deleted = true
WHERE _dlt_load_id < %s AND NOT coalesce(is_deleted, false) {scope}
  AND EXISTS (SELECT 1 FROM {loads} WHERE load_id = %s AND status = 0)
"""
SCOPE_COLUMNS = {"groupId": "group_id", "scraperId": "scraper_id"}


def post_load(pipeline: dlt.Pipeline) -> int:
    """Mark `jobs` rows that a full re-read of their scope no longer found (soft-deleted).

    `jobs` re-reads a scope in full when its `totalElements` shows runs vanished below the
    watermark; every run still listed was rewritten by that load, so older rows of the scope
    are the vanished ones. Idempotent: it only touches rows loaded before that load.
    """
    state = pipeline.state.get("sources", {}).get("scrapewise", {})
    reconciled = state.get("resources", {}).get("jobs", {}).get("reconciled", {})
    if not reconciled or "jobs" not in _tables(pipeline):
        return 0
    with pipeline.sql_client() as client:
        jobs = client.make_qualified_table_name("jobs")
        loads = client.make_qualified_table_name("_dlt_loads")
        for entry in reconciled.values():
            args: list[Any] = [entry["load_id"]]
            scope = ""
            for name, value in entry["filters"].items():
                scope += f" AND {SCOPE_COLUMNS[name]} = %s"
                args.append(value)
            if entry.get("since"):
                scope += " AND started >= %s"
                args.append(entry["since"])
            sql = MARK_VANISHED_SQL.format(jobs=jobs, loads=loads, scope=scope)
            client.execute_sql(sql, *args, entry["load_id"])
    logger.info(f"scrapewise: checked {len(reconciled)} re-read scope(s) for vanished runs")
    return 0
