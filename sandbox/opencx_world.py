"""open.cx sandbox data: datasources and their crawl jobs on a virtual clock.

The state machine of a crawl job (pending -> scraping -> completed | failed, or cancelled) and
the data generator behind `sandbox/opencx.py`, which serves it over HTTP. Each `advance()` is
ten minutes in which pending jobs start, scraping jobs grow their page counters and end
(`completed`, sometimes `failed`), idle datasources get scheduled recrawls and new datasources
appear. Field defaults and ranges follow docs/opencx.md#endpoints.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(2025, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
TERMINAL = ("completed", "failed", "cancelled")
ACTIVE_FIELDS = ["id", "status", "total_pages", "completed_pages", "new_pages", "updated_pages"]
ACTIVE_FIELDS += ["removed_pages", "unchanged_pages", "started_at"]


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class CrawlWorld:
    """Deterministic, evolving open.cx website datasources and crawl jobs (no HTTP).

    Args:
        datasources: datasources that exist before the first sync.
        jobs_per_datasource: finished crawl jobs in each datasource's history.
        seed: seed of the deterministic generator.
    """

    def __init__(self, datasources: int = 4, jobs_per_datasource: int = 3, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.clock = EPOCH
        self.datasources: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, dict[str, int]] = {}
        self.site_pages: dict[str, int] = {}
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        self.active: dict[str, str | None] = {}
        self.graveyard: dict[str, dict[str, Any]] = {}
        self._seed_data(datasources, jobs_per_datasource)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _seed_data(self, count: int, history: int) -> None:
        self.clock = EPOCH - timedelta(days=history * 8 + 8)
        ids = [
            self.create_datasource(f"https://docs{i}.example.com", auto_start=False)
            for i in range(count)
        ]
        for round_ in range(history):
            self.clock = EPOCH - timedelta(days=(history - round_) * 8)
            for ds_id in ids:
                job = self.start_crawl(ds_id)
                while job["status"] not in TERMINAL:
                    self._step_job(ds_id, job, fail_rate=0.1 if round_ else 0.0)
                    self.clock += STEP
        # something is happening when the first sync runs: a crawl half way, one just queued
        self.clock = EPOCH - 2 * STEP
        if ids:
            job = self.start_crawl(ids[0])
            for _ in range(2):
                self.clock += STEP
                self._step_job(ids[0], job)
        self.clock = EPOCH
        if len(ids) > 1:
            self.start_crawl(ids[1])

    def create_datasource(self, url: str, auto_start: bool = True, **fields: Any) -> str:
        ds_id = self._uuid()
        now = ts(self.clock)
        host = re.sub(r"^https?://", "", url).split("/")[0]
        self.datasources[ds_id] = {
            "id": ds_id,
            "url": url,
            "display_name": fields.get("display_name") or host,
            "status": "active",
            "page_limit": fields.get("page_limit", 100),
            "exclude_paths": fields.get("exclude_paths", []),
            "include_paths": fields.get("include_paths", []),
            "crawl_interval_hours": fields.get("crawl_interval_hours", 168),
            "last_crawl_started_at": None,
            "last_crawl_completed_at": None,
            "error_message": None,
            "created_at": now,
            "updated_at": now,
        }
        self.stats[ds_id] = {"total": 0, "synced": 0, "pending": 0, "error": 0, "excluded": 0}
        self.site_pages[ds_id] = self.rng.randint(40, 400)
        self.jobs[ds_id] = []
        self.active[ds_id] = None
        if auto_start:
            self.start_crawl(ds_id)
        return ds_id

    def delete_datasource(self, ds_id: str) -> None:
        """Delete a datasource and its jobs (kept in `graveyard` for `truth()`)."""
        self.graveyard[ds_id] = {
            "datasource": self.datasources.pop(ds_id),
            "jobs": self.jobs.pop(ds_id),
        }
        self.stats.pop(ds_id)
        self.active.pop(ds_id)

    def start_crawl(self, ds_id: str) -> dict[str, Any]:
        now = ts(self.clock)
        job: dict[str, Any] = {
            "id": self._uuid(),
            "datasource_id": ds_id,
            "status": "pending",
            "started_at": None,
            "completed_at": None,
            "total_pages": None,
            "completed_pages": 0,
            "new_pages": 0,
            "updated_pages": 0,
            "removed_pages": 0,
            "unchanged_pages": 0,
            "error_message": None,
            "created_at": now,
            "updated_at": now,
        }
        self.jobs[ds_id].append(job)
        self.active[ds_id] = job["id"]
        self._touch(ds_id, last_crawl_started_at=now)
        return job

    def cancel(self, ds_id: str, job: dict[str, Any]) -> None:
        self._finish(ds_id, job, "cancelled")

    def _touch(self, ds_id: str, **fields: Any) -> None:
        self.datasources[ds_id].update(fields, updated_at=ts(self.clock))

    def _step_job(self, ds_id: str, job: dict[str, Any], fail_rate: float = 0.0) -> None:
        """One step of the job's state machine: pending -> scraping -> completed | failed."""
        now = ts(self.clock)
        if job["status"] == "pending":
            limit = self.datasources[ds_id]["page_limit"] or 5000
            job.update(
                status="scraping", started_at=now, total_pages=min(limit, self.site_pages[ds_id])
            )
        elif job["status"] == "scraping":
            if self.rng.random() < fail_rate:
                self._finish(ds_id, job, "failed", "Crawler timed out after 3 retries")
                return
            total = job["total_pages"]
            chunk = min(total - job["completed_pages"], max(1, math.ceil(total * 0.4)))
            new = chunk // 10 if self.stats[ds_id]["total"] else chunk
            updated = (chunk - new) // 4
            job["completed_pages"] += chunk
            job["new_pages"] += new
            job["updated_pages"] += updated
            job["unchanged_pages"] += chunk - new - updated
            if job["completed_pages"] >= total:
                job["removed_pages"] = max(0, self.stats[ds_id]["total"] - total + job["new_pages"])
                self._finish(ds_id, job, "completed")
                return
        job["updated_at"] = now

    def _finish(
        self, ds_id: str, job: dict[str, Any], status: str, error: str | None = None
    ) -> None:
        now = ts(self.clock)
        job.update(status=status, completed_at=now, updated_at=now, error_message=error)
        self.active[ds_id] = None
        self._touch(ds_id, last_crawl_completed_at=now, error_message=error)
        if status == "completed":
            total = job["total_pages"]
            errors = total // 50
            excluded = len(self.datasources[ds_id]["exclude_paths"]) * 3
            self.stats[ds_id] = {
                "total": total + excluded,
                "synced": total - errors,
                "pending": 0,
                "error": errors,
                "excluded": excluded,
            }

    def advance(self) -> dict[str, int]:
        """Ten minutes pass: running crawls progress, some recrawls start, a site may appear."""
        self.clock += STEP
        counts = {"crawls_started": 0, "crawls_progressed": 0, "crawls_finished": 0}
        for ds_id in list(self.datasources):
            job = self._active_job(ds_id)
            if job is not None:
                self._step_job(ds_id, job, fail_rate=0.05)
                counts["crawls_progressed"] += 1
                counts["crawls_finished"] += job["status"] in TERMINAL
            elif self.datasources[ds_id]["status"] == "active" and self.rng.random() < 0.3:
                self.start_crawl(ds_id)
                counts["crawls_started"] += 1
        if self.rng.random() < 0.2:
            self.create_datasource(f"https://site{len(self.datasources)}.example.org")
            counts["datasources_created"] = 1
        return counts

    def _active_job(self, ds_id: str) -> dict[str, Any] | None:
        job_id = self.active.get(ds_id)
        return self._job(ds_id, job_id) if job_id else None

    def _job(self, ds_id: str, job_id: str) -> dict[str, Any] | None:
        return next((job for job in self.jobs.get(ds_id, []) if job["id"] == job_id), None)

    def detail(self, ds_id: str) -> dict[str, Any]:
        """`GET /crawl/{id}`: the datasource plus `page_stats` and `active_crawl_job`."""
        job = self._active_job(ds_id)
        active = None
        if job is not None:
            active = {name: job[name] for name in ACTIVE_FIELDS}
        return {
            **self.datasources[ds_id],
            "page_stats": dict(self.stats[ds_id]),
            "active_crawl_job": active,
        }

    def truth(self) -> dict[str, Any]:
        """Live datasources (detail form), deleted ones, and every job by id."""
        jobs = {job["id"]: job for jobs in self.jobs.values() for job in jobs}
        for dead in self.graveyard.values():
            jobs.update({job["id"]: job for job in dead["jobs"]})
        return {
            "datasources": {ds_id: self.detail(ds_id) for ds_id in self.datasources},
            "deleted": set(self.graveyard),
            "jobs": jobs,
        }

    def expected_rows(self) -> dict[str, int]:
        truth = self.truth()
        return {
            "datasources": len(truth["datasources"]) + len(truth["deleted"]),
            "crawl_jobs": len(truth["jobs"]),
        }
