"""Pure record transforms: Oxylabs answers and journal rows -> the rows scrapesync loads.

No I/O here: each function takes decoded JSON (or a journal row) and returns a row, so each is
tested in milliseconds (tests/fast/test_oxylabs_fast.py).
"""

from __future__ import annotations

from typing import Any

import orjson
import pendulum

from scrapesync.sources.common.errors import malformed_item
from scrapesync.sources.common.shapes import safe_row
from scrapesync.sources.common.validation import undocumented
from scrapesync.sources.oxylabs.settings import (
    CODE_RETRY_FREE,
    CODE_TOO_MANY_RETRIES,
    RESULT_FIELDS,
    RESULTS_PATH,
)


def oxylabs_time(value: Any) -> pendulum.DateTime | None:
    """`YYYY-MM-DD HH:MM:SS` without zone (UTC: docs/oxylabs.md#jobs) as an aware datetime."""
    if not value:
        return None
    try:
        parsed = pendulum.from_format(str(value), "YYYY-MM-DD HH:mm:ss", tz="UTC")
    except ValueError:
        parsed = pendulum.parse(str(value), tz="UTC")  # type: ignore[assignment]
    return parsed


def exact_int(value: Any, what: str, path: str) -> int:
    """A Scheduler id as the exact integer the API sent (ids above 2^53 are common)."""
    if isinstance(value, bool) or not isinstance(value, int):
        # a float here would mean a lossy parser somewhere: refuse rather than store a wrong id
        raise malformed_item("oxylabs", path, f"{what} {value!r} is not an integer")
    return value


# -- push-pull results --------------------------------------------------------------------------
def fault_reason(code: int | None, parse_code: Any, codes: list[Any]) -> str:
    """A readable reason for a faulted job, from its fault code or parse status code."""
    if code == CODE_RETRY_FREE:
        return "612 Undefined Internal Error: the job failed; retry at no extra cost"
    if code == CODE_TOO_MANY_RETRIES:
        return "613 Faulted After Too Many Retries"
    if parse_code:
        return f"parse failed (parse_status_code {parse_code}); target status {codes}"
    return f"faulted (target status {codes})"


def page_number(job: dict[str, Any], value: Any) -> int:
    """The page number, part of the primary key: a positive integer or the answer is broken."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        path = RESULTS_PATH.format(job_id=job["job_id"])
        raise malformed_item("oxylabs", path, f"result page {value!r} is not a page number")
    return value


# columns of `results` scrapesync sets; an undocumented field of such a name is renamed
RESULT_COLUMNS = (
    "job_id", "page", "query", "source", "url", "status_code", "type", "created_at",
    "updated_at", "parser_type", "content", "parsed",
)  # fmt: skip


def result_row(job: dict[str, Any], page: dict[str, Any], position: int = 1) -> dict[str, Any]:
    """One `results` row: raw HTML stays a string; parsed objects are flattened by dlt.

    Undocumented fields of a page are schema drift and land as columns. A page without its
    `page` number takes its position in the answer (1-based), as the API numbers them.
    """
    params = orjson.loads(job["params"] or "{}")
    row = safe_row(undocumented(page, RESULT_FIELDS), RESULT_COLUMNS)
    row |= {
        "job_id": str(job["job_id"]),
        "page": page_number(job, page.get("page", position)),
        "query": job["value"] if job["kind"] == "query" else None,
        "source": params.get("source"),
        "url": page.get("url"),
        "status_code": page.get("status_code"),
        "type": page.get("type"),
        "created_at": oxylabs_time(page.get("created_at")),
        "updated_at": oxylabs_time(page.get("updated_at")),
        "parser_type": page.get("parser_type") or None,
    }
    content = page.get("content")
    # parsed results are the target page's own keys: names dlt would merge are renamed
    parsed = safe_row(content) if isinstance(content, dict) else content
    row["content" if isinstance(content, str) else "parsed"] = parsed
    return row


# -- the journal mirrored into the warehouse ----------------------------------------------------
def ledger_row(row: dict[str, Any]) -> dict[str, Any]:
    """One `jobs` row from a journal job row."""
    params = orjson.loads(row["params"] or "{}")
    return {
        "id": row["job_id"],
        "status": row["status"],
        "query": row["value"] if row["kind"] == "query" else None,
        "url": row["value"] if row["kind"] == "url" else None,
        "source": params.get("source"),
        "params": params,
        "origin": row["origin"],
        "fingerprint": row["fingerprint"],
        "attempt": row["attempt"],
        "batch_id": row["batch_id"],
        "fault_code": row["fault_code"],
        "fault_reason": row["fault_reason"],
        "result_pages": row["result_pages"],
        "submitted_at": row["submitted_at"],
        "finished_at": oxylabs_time(row["finished_at"]),
        "callback_at": row["callback_at"],
        "resubmitted_as": row["resubmitted_as"],
        "_version": row["version"],
    }


def submission_row(batch: dict[str, Any]) -> dict[str, Any]:
    """One `submissions` row from a journal batch row."""
    return {
        "batch_id": batch["batch_id"],
        "state": batch["state"],
        "kind": batch["kind"],
        "size": batch["size"],
        "params": orjson.loads(batch["params"] or "{}"),
        "created_at": batch["created_at"],
        "sent_at": batch["sent_at"],
        "answered_at": batch["answered_at"],
        "note": batch["note"],
    }


# -- Scheduler ------------------------------------------------------------------------------------
def schedule_row(detail: dict[str, Any], listed_id: int, path: str) -> dict[str, Any]:
    """One `schedules` row from `GET /v1/schedules/{id}` (stats flattened one level)."""
    stats = detail.get("stats") or {}
    return {
        "schedule_id": exact_int(detail.get("schedule_id", listed_id), "schedule_id", path),
        "active": detail.get("active"),
        "items_count": detail.get("items_count"),
        "cron": detail.get("cron"),
        "end_time": oxylabs_time(detail.get("end_time")),
        "next_run_at": oxylabs_time(detail.get("next_run_at")),
        "total_job_count": stats.get("total_job_count"),
        "job_create_outcomes": stats.get("job_create_outcomes"),
        "job_result_outcomes": stats.get("job_result_outcomes"),
        "_deleted": False,
    }


def run_job_row(
    schedule_id: int, run: dict[str, Any], job: dict[str, Any], path: str
) -> dict[str, Any]:
    """One `schedule_runs` row: a job of a run (job ids as text, to join `results.job_id`)."""
    return {
        "schedule_id": schedule_id,
        "run_id": exact_int(run.get("run_id"), "run_id", path),
        "job_id": str(exact_int(job.get("id"), "job id", path)),
        "create_status_code": job.get("create_status_code"),
        "result_status": job.get("result_status") or "pending",
        "created_at": oxylabs_time(job.get("created_at")),
        "result_created_at": oxylabs_time(job.get("result_created_at")),
        "success_rate": run.get("success_rate"),
    }
