"""Oxylabs sandbox data: job and schedule records, the bodies the API answers with, the
Basic-auth check and the callback sender.

No routing and no clock of their own: `sandbox/oxylabs.py` calls them from its handlers and its
state machine. Shapes follow docs/oxylabs.md (#jobs, #results, #scheduler, #errors).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

DEFAULT_USER = "sandbox_user"
DEFAULT_PASSWORD = "sandbox_pass"  # a sandbox credential, not a secret
# the virtual clock starts at the real time the sandbox is loaded, as a real account's jobs
# do: a job's `updated_at` must never precede the moment scrapesync submitted it
EPOCH = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
STEP = timedelta(hours=1)
FIRST_JOB_ID = 7_300_439_540_206_948_353
FIRST_SCHEDULE_ID = 3_809_594_044_634_907_291
FIRST_RUN_ID = 25_037_485
MAX_BATCH = 5000
GONE = "The job ID you are looking for is no longer available."


def timestamp(step: int) -> str:
    """The API's `YYYY-MM-DD HH:MM:SS` (no zone) of virtual step `step`."""
    return (EPOCH + STEP * step).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Job:
    """One push-pull job: its public object plus the sandbox's bookkeeping."""

    job: dict[str, Any]
    created_step: int
    finish_step: int
    finished_step: int | None = None
    expired: bool = False
    fault_code: int | None = None


@dataclass
class Schedule:
    schedule_id: int
    items: list[dict[str, Any]]
    active: bool = True
    runs: list[dict[str, Any]] = field(default_factory=list)
    cron: str = "0 * * * *"
    end_time: str = "2032-12-01 16:00:00"


def job_object(
    job_id: str, kind: str, value: str, params: dict[str, Any], base: str, now: str
) -> dict[str, Any]:
    """The job object of the documented examples (submission, status, results, callback)."""
    return {
        "callback_url": params.get("callback_url"),
        "client_id": 5,
        "context": params.get("context", []),
        "created_at": now,
        "domain": params.get("domain", "com"),
        "geo_location": params.get("geo_location"),
        "id": job_id,
        "limit": params.get("limit", 10),
        "locale": params.get("locale"),
        "pages": int(params.get("pages", 1)),
        "parse": bool(params.get("parse", False)),
        "render": params.get("render"),
        kind: value,
        "source": params["source"],
        "start_page": params.get("start_page", 1),
        "status": "pending",
        "storage_type": params.get("storage_type"),
        "storage_url": params.get("storage_url"),
        "client_notes": params.get("client_notes"),
        "subdomain": "www",
        "updated_at": now,
        "user_agent_type": params.get("user_agent_type", "desktop"),
        "_links": links(job_id, base),
    }


def links(job_id: str, base: str) -> list[dict[str, str]]:
    # the real API links over http:// (docs/oxylabs.md#auth)
    root = base.replace("https://", "http://") + f"/v1/queries/{job_id}"
    return [
        {"rel": "self", "href": root, "method": "GET"},
        {"rel": "results", "href": f"{root}/results", "method": "GET"},
        {"rel": "results-html", "href": f"{root}/results?type=raw", "method": "GET"},
        {"rel": "results-parsed", "href": f"{root}/results?type=parsed", "method": "GET"},
    ]


def result_body(job: Job, kind: str, html_bytes: int) -> dict[str, Any]:
    """`{"results": [page, ...], "job": job}`; a faulted job's pages carry its fault code."""
    pages = []
    value = str(job.job.get("query") or job.job.get("url") or "")
    for page in range(1, job.job["pages"] + 1):
        if job.fault_code:
            content: Any = {"parse_status_code": 12003}
            status = job.fault_code
        elif kind == "parsed":
            content = parsed(value, page)
            status = 200
        else:
            content = html(job.job["id"], page, html_bytes)
            status = 200
        pages.append(
            {
                "content": content,
                "created_at": job.job["created_at"],
                "updated_at": job.job["updated_at"],
                "page": page,
                "url": f"https://www.example.com/search?q={value}&page={page}",
                "job_id": job.job["id"],
                "status_code": status,
                "type": kind,
                "parser_type": "",
            }
        )
    return {"results": pages, "job": job.job}


def html(job_id: str, page: int, size: int) -> str:
    seed = hashlib.sha256(f"{job_id}/{page}".encode()).hexdigest()
    body = (seed * (size // len(seed) + 1))[:size]
    tag = f"<body data-job='{job_id}' data-page='{page}'>"
    return f"<!doctype html><html>{tag}{body}</body></html>"


def parsed(value: str, page: int) -> dict[str, Any]:
    return {
        "url": f"https://www.example.com/search?q={value}",
        "page": page,
        "query": value,
        "total_results": 1000 + len(str(value)) * 7 + page,
        "parse_status_code": 12000,
        "results": {"organic": [{"pos": n, "title": f"{value} #{n}"} for n in (1, 2)]},
    }


def schedule_object(schedule: Schedule, next_run_at: str) -> dict[str, Any]:
    """What the Scheduler answers on create (the stats come on `GET /v1/schedules/{id}`)."""
    return {
        "schedule_id": schedule.schedule_id,
        "active": schedule.active,
        "items_count": len(schedule.items),
        "cron": schedule.cron,
        "end_time": schedule.end_time,
        "next_run_at": next_run_at,
    }


def schedule_stats(schedule: Schedule) -> dict[str, Any]:
    jobs = [j for run in schedule.runs for j in run["jobs"]]
    outcomes: dict[str, int] = {}
    for job in jobs:
        outcomes[job["result_status"]] = outcomes.get(job["result_status"], 0) + 1
    return {
        "total_job_count": len(jobs),
        "job_create_outcomes": [{"status_code": 202, "job_count": len(jobs), "ratio": 1}]
        if jobs
        else [],
        "job_result_outcomes": [
            {"status": s, "job_count": n, "ratio": round(n / len(jobs), 4)}
            for s, n in sorted(outcomes.items())
        ],
    }


def auth_failure(header: str | None, users: dict[str, str]) -> str | None:
    """The API's 401 message for this `Authorization` header, or None when it is accepted."""
    if not header:
        return "Authorization header not provided"
    kind, _, encoded = header.partition(" ")
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "Invalid authorization header"
    if kind.lower() != "basic":
        return "Invalid authorization header"
    if users.get(user) != password:
        return "Client not found"
    return None


def send_callback(url: str, body: bytes, callbacker_ips: list[str]) -> int:
    """POST one callback from the first callbacker IP (a 127.x.x.x address) to a local URL."""
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1":
        raise ValueError(f"sandbox callbacks go only to 127.0.0.1, not {parts.hostname}")
    source = callbacker_ips[0] if callbacker_ips else "127.0.0.1"
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port or 80, timeout=10, source_address=(source, 0)
    )
    try:
        conn.request("POST", parts.path or "/", body, {"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()
