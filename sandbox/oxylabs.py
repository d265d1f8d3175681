"""Oxylabs Web Scraper API sandbox: push-pull, callbacks, cloud storage, Scheduler.

The API as docs/oxylabs.md describes it. Jobs live on a virtual clock: each `advance()` is one
hour; a job submitted before it finishes (`done`, or `faulted` for a deterministic share of
jobs with target status 612 or 613), gets its callback queued, its `<job_id>.json` written to
the storage directory when submitted with `storage_type`/`storage_url`, and its results expire
`result_ttl_steps` hours after finishing (404). Scheduler schedules start one run per active
schedule per step. Scheduler responses carry ids as raw JSON integers above 2^53, exactly as
the real API does. The records and answer bodies are built in `sandbox/oxylabs_data.py`.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from scrapesync.sandbox.base import ProviderAPI, SandboxRequest, SandboxResponse
from scrapesync.sandbox.oxylabs_data import (
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    FIRST_JOB_ID,
    FIRST_RUN_ID,
    FIRST_SCHEDULE_ID,
    GONE,
    MAX_BATCH,
    Job,
    Schedule,
    auth_failure,
    job_object,
    result_body,
    schedule_object,
    schedule_stats,
    send_callback,
    timestamp,
)

# the base of the `_links` of jobs the Scheduler creates (no request to take it from)
SCHEDULER_BASE = "http://data.oxylabs.io"


class OxylabsAPI(ProviderAPI):
    """Deterministic Oxylabs push-pull and Scheduler.

    Args:
        users: accepted Basic-auth users (name -> password).
        fault_every: every n-th job faults (0: none); the odd ones with 612, the even with 613.
        steps_to_finish: advances a job stays pending.
        result_ttl_steps: advances after finishing when results expire (Oxylabs: >= 24 h).
        html_bytes: size of each raw result page.
        latency: seconds every request takes (the server sleeps it outside its dispatch lock,
            so concurrent clients overlap like they do against the real API).
        rate_limit: requests per second per user before 429 (None: unlimited); every answer
            carries `x-ratelimit-requests-limit` / `-remaining`.
        schedules: Scheduler schedules to create (each with two items).
        callbacker_ips: what `/v1/info/callbacker_ips` lists; callbacks are sent from the
            first one (a 127.x.x.x address), and only to 127.0.0.1 URLs.
        storage_dir: the local directory standing in for the cloud bucket.
        workdir: where the journal the sandbox's `source_options` name lives (default: a
            new temporary directory).
        seed: seed of the deterministic generator.
    """

    name = "oxylabs"

    def __init__(
        self,
        users: dict[str, str] | None = None,
        fault_every: int = 0,
        steps_to_finish: int = 1,
        result_ttl_steps: int = 24,
        html_bytes: int = 2000,
        latency: float = 0.0,
        rate_limit: float | None = None,
        schedules: int = 1,
        callbacker_ips: tuple[str, ...] = ("127.0.0.2",),
        storage_dir: str | None = None,
        workdir: str | None = None,
        seed: int = 11,
    ) -> None:
        super().__init__()
        self.users = users or {DEFAULT_USER: DEFAULT_PASSWORD}
        self.fault_every = fault_every
        self.steps_to_finish = steps_to_finish
        self.result_ttl_steps = result_ttl_steps
        self.html_bytes = html_bytes
        self.latency = latency
        self.rate_limit = rate_limit
        self.callbacker_ips = list(callbacker_ips)
        # created on first use: every sandbox server builds this provider, most never use it
        self._workdir = Path(workdir) if workdir else None
        self._storage_dir = Path(storage_dir) if storage_dir else None
        self.rng = random.Random(seed)
        self.step = 0
        self.next_job = FIRST_JOB_ID
        self.jobs: dict[str, Job] = {}
        self.callbacks: list[tuple[str, dict[str, Any]]] = []
        self.created_values: list[str] = []
        self._window: dict[str, tuple[float, int]] = {}
        self._rate_lock = threading.Lock()
        self.schedules: dict[int, Schedule] = {}
        for n in range(schedules):
            items = [
                {"source": "universal", "url": f"https://shop.example.com/s{n}/{i}"} for i in (1, 2)
            ]
            schedule = Schedule(FIRST_SCHEDULE_ID + n * 7919, items)
            self.schedules[schedule.schedule_id] = schedule
        for schedule in self.schedules.values():
            self._run(schedule)  # a schedule that already ran once before the first sync
        self.route("POST", r"/v1/queries/batch", self.batch)
        self.route("POST", r"/v1/queries", self.single)
        self.route("GET", r"/v1/queries/(?P<job_id>\d+)", self.status)
        self.route("GET", r"/v1/queries/(?P<job_id>\d+)/results", self.results)
        self.route("GET", r"/v1/info/callbacker_ips", self.ips)
        self.route("GET", r"/v1/schedules", self.list_schedules)
        self.route("POST", r"/v1/schedules", self.create_schedule)
        self.route("GET", r"/v1/schedules/(?P<sid>\d+)", self.schedule)
        self.route("GET", r"/v1/schedules/(?P<sid>\d+)/runs", self.runs)
        self.route("PUT", r"/v1/schedules/(?P<sid>\d+)/state", self.set_state)

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="oxylabs-sandbox-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    @property
    def storage_dir(self) -> Path:
        path = self._storage_dir or self.workdir / "bucket"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- plumbing -------------------------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> SandboxResponse:
        return SandboxResponse.json({"message": message, **extra}, status)

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        problem = self._auth(request)
        if problem:
            return problem
        limited, headers = self._rate()
        if limited:
            return SandboxResponse.json({"message": "Too many requests"}, 429, headers)
        response = super().handle(request)
        response.headers.update(headers)
        return response

    def _auth(self, request: SandboxRequest) -> SandboxResponse | None:
        problem = auth_failure(request.header("authorization"), self.users)
        return self.error(401, problem) if problem else None

    def _rate(self) -> tuple[bool, dict[str, str]]:
        if self.rate_limit is None:
            return False, {}
        limit = int(self.rate_limit)
        second = int(time.monotonic())
        with self._rate_lock:
            start, used = self._window.get("requests", (second, 0))
            if start != second:
                start, used = second, 0
            used += 1
            self._window["requests"] = (start, used)
        headers = {
            "x-ratelimit-requests-limit": str(limit),
            "x-ratelimit-requests-remaining": str(max(0, limit - used)),
        }
        if used > limit:
            headers["Retry-After"] = "1"
            return True, headers
        return False, headers

    def _body(self, request: SandboxRequest) -> tuple[Any, SandboxResponse | None]:
        try:
            return request.json(), None
        except orjson.JSONDecodeError:
            return None, self.error(422, "Unprocessable Entity: the payload is not valid JSON")

    # -- jobs -----------------------------------------------------------------------------
    def _new_job(self, kind: str, value: str, params: dict[str, Any], base: str) -> dict[str, Any]:
        job_id = str(self.next_job)
        self.next_job += 4096 + self.rng.randint(1, 4000)
        job = job_object(job_id, kind, value, params, base, timestamp(self.step))
        number = len(self.jobs) + 1
        self.jobs[job_id] = Job(job, self.step, self.step + self.steps_to_finish)
        if self.fault_every and number % self.fault_every == 0:
            self.jobs[job_id].fault_code = 612 if (number // self.fault_every) % 2 else 613
        self.created_values.append(value)
        return job

    def _params(
        self, request: SandboxRequest
    ) -> tuple[dict[str, Any] | None, SandboxResponse | None]:
        body, problem = self._body(request)
        if problem:
            return None, problem
        if not isinstance(body, dict) or not body.get("source"):
            return None, self.error(400, "source: Missing data for required field.")
        return body, None

    def batch(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        body, problem = self._params(request)
        if problem or body is None:
            return problem or self.error(400, "bad request")
        kinds = [k for k in ("query", "url") if k in body]
        if len(kinds) != 1 or not isinstance(body[kinds[0]], list):
            return self.error(400, "Provide a list of `query` or `url` values (one of them).")
        values = body.pop(kinds[0])
        if len(values) > MAX_BATCH:
            return self.error(400, f"Batch size exceeds the limit of {MAX_BATCH} queries.")
        for name, value in body.items():
            if isinstance(value, list) and name != "context":
                return self.error(400, f"{name}: Must be a single value in a batch.")
        jobs = [self._new_job(kinds[0], str(v), body, request.base_url) for v in values]
        return SandboxResponse.json({"queries": jobs}, 202)

    def single(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        body, problem = self._params(request)
        if problem or body is None:
            return problem or self.error(400, "bad request")
        kinds = [k for k in ("query", "url") if k in body]
        # "This endpoint accepts only a single query or URL value" (docs/oxylabs.md#endpoints)
        if len(kinds) != 1 or isinstance(body[kinds[0]], (list, dict)):
            return self.error(400, "Provide one `query` or `url` value (lists go to /batch).")
        value = body.pop(kinds[0])
        return SandboxResponse.json(
            self._new_job(kinds[0], str(value), body, request.base_url), 202
        )

    def status(self, _: SandboxRequest, groups: dict[str, str]) -> SandboxResponse:
        job = self.jobs.get(groups["job_id"])
        if job is None or job.expired:
            return self.error(404, GONE)
        return SandboxResponse.json(job.job)

    def results(self, request: SandboxRequest, groups: dict[str, str]) -> SandboxResponse:
        job = self.jobs.get(groups["job_id"])
        if job is None or job.expired:
            return self.error(404, GONE)
        if job.job["status"] == "pending":
            return SandboxResponse(204)
        kind = request.param("type") or ("parsed" if job.job["parse"] else "raw")
        return SandboxResponse.json(result_body(job, kind, self.html_bytes))

    def ips(self, _: SandboxRequest, __: dict[str, str]) -> SandboxResponse:
        return SandboxResponse.json({"ips": self.callbacker_ips})

    # -- scheduler ------------------------------------------------------------------------
    def list_schedules(self, _: SandboxRequest, __: dict[str, str]) -> SandboxResponse:
        return SandboxResponse.json({"schedules": list(self.schedules)})

    def create_schedule(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        body, problem = self._body(request)
        if problem:
            return problem
        body = body if isinstance(body, dict) else {}
        missing = [name for name in ("cron", "items", "end_time") if not body.get(name)]
        if missing:
            return self.error(400, f"{missing[0]}: Missing data for required field.")
        if not isinstance(body["items"], list):
            return self.error(400, "items: Must be a list of job parameter sets.")
        sid = FIRST_SCHEDULE_ID + len(self.schedules) * 7919
        schedule = Schedule(sid, list(body["items"]), True, [], body["cron"], body["end_time"])
        self.schedules[sid] = schedule
        return SandboxResponse.json(schedule_object(schedule, timestamp(self.step + 1)))

    def _schedule(self, sid: str) -> Schedule | None:
        return self.schedules.get(int(sid))

    def schedule(self, _: SandboxRequest, groups: dict[str, str]) -> SandboxResponse:
        schedule = self._schedule(groups["sid"])
        if schedule is None:
            return self.error(404, "Schedule not found.")
        body = schedule_object(schedule, timestamp(self.step + 1))
        return SandboxResponse.json({**body, "stats": schedule_stats(schedule)})

    def runs(self, _: SandboxRequest, groups: dict[str, str]) -> SandboxResponse:
        schedule = self._schedule(groups["sid"])
        if schedule is None:
            return self.error(404, "Schedule not found.")
        for run in schedule.runs:
            for entry in run["jobs"]:
                job = self.jobs[str(entry["id"])]
                entry["result_status"] = job.job["status"]
                if job.finished_step is not None:
                    entry["result_created_at"] = job.job["updated_at"]
        return SandboxResponse.json({"runs": schedule.runs})

    def set_state(self, request: SandboxRequest, groups: dict[str, str]) -> SandboxResponse:
        schedule = self._schedule(groups["sid"])
        if schedule is None:
            return self.error(404, "Schedule not found.")
        body, problem = self._body(request)
        if problem:
            return problem
        active = body.get("active") if isinstance(body, dict) else None
        if not isinstance(active, bool):
            return self.error(400, "active: Not a valid boolean.")
        schedule.active = active
        return SandboxResponse(202)

    # -- evolution ------------------------------------------------------------------------
    def advance(self) -> dict[str, int]:
        self.step += 1
        counts = {"finished": 0, "faulted": 0, "expired": 0, "scheduled": 0}
        for job in self.jobs.values():
            if job.finished_step is None and job.finish_step <= self.step:
                self._finish(job)
                counts["faulted" if job.fault_code else "finished"] += 1
            elif (
                job.finished_step is not None
                and not job.expired
                and self.step - job.finished_step >= self.result_ttl_steps
            ):
                job.expired = True
                counts["expired"] += 1
        for schedule in self.schedules.values():
            if schedule.active:
                counts["scheduled"] += self._run(schedule)
        return counts

    def _finish(self, job: Job) -> None:
        job.finished_step = self.step
        job.job["status"] = "faulted" if job.fault_code else "done"
        job.job["updated_at"] = timestamp(self.step)
        if job.job.get("callback_url"):
            self.callbacks.append((job.job["callback_url"], dict(job.job)))
        if job.job.get("storage_type") and job.job.get("storage_url") and not job.fault_code:
            kind = "parsed" if job.job["parse"] else "raw"
            path = self.storage_dir / f"{job.job['id']}.json"
            path.write_bytes(orjson.dumps(result_body(job, kind, self.html_bytes)))

    def _run(self, schedule: Schedule) -> int:
        run_id = FIRST_RUN_ID + sum(len(s.runs) for s in self.schedules.values()) * 3
        entries = []
        for item in schedule.items:
            kind = "query" if "query" in item else "url"
            params = {k: v for k, v in item.items() if k not in ("url", "query")}
            job = self._new_job(kind, str(item.get(kind, "")), params, SCHEDULER_BASE)
            entries.append(
                {
                    "id": int(job["id"]),
                    "create_status_code": 202,
                    "result_status": "pending",
                    "created_at": job["created_at"],
                    "result_created_at": None,
                }
            )
        schedule.runs.append({"run_id": run_id, "jobs": entries, "success_rate": 1})
        return len(entries)

    def expire(self, job_ids: list[str]) -> None:
        """Let these jobs' results expire now (as if nobody collected them for 24 h)."""
        for job_id in job_ids:
            self.jobs[job_id].expired = True

    def deliver_callbacks(self, drop: int = 0, duplicate: int = 0, reverse: bool = False) -> int:
        """POST the queued callbacks (from `callbacker_ips[0]`): drop the first `drop`, send the
        first `duplicate` twice, optionally in reverse order. Returns how many were sent."""
        queued, self.callbacks = self.callbacks, []
        queued = list(reversed(queued)) if reverse else queued
        sent = 0
        for index, (url, job) in enumerate(queued):
            if index < drop:
                continue
            for _ in range(2 if index < drop + duplicate else 1):
                send_callback(url, orjson.dumps(job), self.callbacker_ips)
                sent += 1
        return sent

    # -- tests and demo -------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        return {job_id: job.job["status"] for job_id, job in self.jobs.items()}

    def expected_rows(self) -> dict[str, int]:
        """Rows a sync right after the last change holds: every job of this account was made
        by scrapesync (a submission or a schedule), so every done one is collected."""
        done = [j for j in self.jobs.values() if j.job["status"] == "done" and not j.expired]
        expected = {"schedules": len(self.schedules)}
        if done:  # the table exists once a job was collected
            expected["results"] = sum(j.job["pages"] for j in done)
        return expected

    def source_options(self, base_url: str) -> dict[str, Any]:
        return {
            "base_url": base_url,
            "username": DEFAULT_USER,
            "password": DEFAULT_PASSWORD,
            "storage_bucket_url": str(self.storage_dir),
        }
