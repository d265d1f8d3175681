"""Typed request and response builders for the Oxylabs API (push-pull and Scheduler).

In the style of Airbyte's RequestBuilder / ResponseBuilder: a test states the one thing that
matters (a status, a fault code, a page number) and the builder fills in the rest of a body
shaped like the documented examples (docs/oxylabs.md). Paths come from the package's own
endpoint table, so a path fixed there is fixed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from httpmock import HttpRequest, HttpResponse

from scrapesync.sources.oxylabs.settings import (
    BATCH_PATH,
    CALLBACKER_IPS_PATH,
    JOB_PATH,
    RESULTS_PATH,
    SCHEDULE_PATH,
    SCHEDULE_RUNS_PATH,
    SCHEDULES_PATH,
)

JOB_ID = "7173957294344910849"
SCHEDULE_ID = 3_809_594_044_634_907_291  # above 2^53, as the Scheduler sends them
SCHEDULER_JOB_ID = 7_300_439_540_206_948_353
CREATED = "2025-03-01 09:00:01"
FINISHED = "2025-03-01 09:00:15"


# -- requests -------------------------------------------------------------------------------
class OxylabsRequests:
    """The requests scrapesync sends, by endpoint-table name."""

    @staticmethod
    def batch(body: Mapping[str, Any] | None = None) -> HttpRequest:
        return HttpRequest(BATCH_PATH, query={}, json_body=body)

    @staticmethod
    def job(job_id: str = JOB_ID) -> HttpRequest:
        return HttpRequest(JOB_PATH.format(job_id=job_id), query={})

    @staticmethod
    def results(job_id: str = JOB_ID, result_type: str | None = "raw") -> HttpRequest:
        query = {"type": result_type} if result_type else {}
        return HttpRequest(RESULTS_PATH.format(job_id=job_id), query=query)

    @staticmethod
    def callbacker_ips() -> HttpRequest:
        return HttpRequest(CALLBACKER_IPS_PATH, query={})

    @staticmethod
    def schedules() -> HttpRequest:
        return HttpRequest(SCHEDULES_PATH, query={})

    @staticmethod
    def schedule(schedule_id: int = SCHEDULE_ID) -> HttpRequest:
        return HttpRequest(SCHEDULE_PATH.format(schedule_id=schedule_id), query={})

    @staticmethod
    def runs(schedule_id: int = SCHEDULE_ID) -> HttpRequest:
        return HttpRequest(SCHEDULE_RUNS_PATH.format(schedule_id=schedule_id), query={})


# -- push-pull bodies -------------------------------------------------------------------------
@dataclass(frozen=True)
class JobBuilder:
    """A job object as the batch, status, results and callback answers carry it."""

    job_id: str = JOB_ID
    status: str = "pending"
    kind: str = "query"
    value: str = "adidas"
    source: str = "google_search"
    parse: bool = False
    pages: int = 1
    client_notes: str | None = None

    def with_status(self, status: str) -> JobBuilder:
        return replace(self, status=status)

    def build(self) -> dict[str, Any]:
        root = f"http://data.oxylabs.io/v1/queries/{self.job_id}"
        return {
            "callback_url": None,
            "client_id": 5,
            "client_notes": self.client_notes,
            "context": [],
            "created_at": CREATED,
            "domain": "com",
            "id": self.job_id,
            self.kind: self.value,
            "pages": self.pages,
            "parse": self.parse,
            "source": self.source,
            "status": self.status,
            "updated_at": FINISHED if self.status != "pending" else CREATED,
            "_links": [
                {"rel": "self", "href": root, "method": "GET"},
                {"rel": "results", "href": f"{root}/results", "method": "GET"},
            ],
        }


@dataclass(frozen=True)
class ResultsResponseBuilder:
    """`GET /v1/queries/{id}/results`: pages plus the job object."""

    job: JobBuilder = field(default_factory=lambda: JobBuilder(status="done"))
    pages: tuple[dict[str, Any], ...] = ()

    def with_page(
        self,
        content: Any = "<!doctype html><html><body>hit</body></html>",
        page: Any = None,
        status_code: int = 200,
        **extra: Any,
    ) -> ResultsResponseBuilder:
        number = len(self.pages) + 1 if page is None else page
        entry = {
            "content": content,
            "created_at": CREATED,
            "updated_at": FINISHED,
            "page": number,
            "url": f"https://www.google.com/search?q={self.job.value}&page={number}",
            "job_id": self.job.job_id,
            "status_code": status_code,
            "type": "parsed" if isinstance(content, dict) else "raw",
            "parser_type": "",
            **extra,
        }
        return replace(self, pages=(*self.pages, entry))

    def without_page_numbers(self) -> ResultsResponseBuilder:
        return replace(
            self, pages=tuple({k: v for k, v in p.items() if k != "page"} for p in self.pages)
        )

    def faulted(self, code: int) -> ResultsResponseBuilder:
        """A job Oxylabs gave up on: its pages carry the job-level code as `status_code`."""
        failed = replace(self, job=self.job.with_status("faulted"), pages=())
        return failed.with_page(content={"parse_status_code": 12003}, status_code=code)

    def build(self) -> HttpResponse:
        return HttpResponse(json={"results": list(self.pages), "job": self.job.build()})


def batch_response(
    values: Sequence[str], first_id: int = 7_300_000_000_000_000_001
) -> HttpResponse:
    """202 `{"queries": [job, ...]}`: one job per value, in the order sent."""
    jobs = [
        JobBuilder(job_id=str(first_id + n), value=value).build() for n, value in enumerate(values)
    ]
    return HttpResponse(status=202, json={"queries": jobs})


def pending_results() -> HttpResponse:
    """204 No Content: the job is not finished."""
    return HttpResponse(status=204, body=b"")


def oxylabs_error(status: int, message: str | list[str]) -> HttpResponse:
    """Oxylabs' error envelope `{"message": ...}`."""
    return HttpResponse(status=status, json={"message": message})


# -- Scheduler bodies ---------------------------------------------------------------------------
def raw_json(text: str, status: int = 200) -> HttpResponse:
    """A body written by hand, so integers above 2^53 go over the wire exactly as typed."""
    return HttpResponse(status=status, body=text, headers={"Content-Type": "application/json"})


def schedules_list(*ids: int) -> HttpResponse:
    return raw_json('{"schedules": [' + ", ".join(str(i) for i in ids) + "]}")


def schedule_detail(schedule_id: int = SCHEDULE_ID, active: bool = True) -> HttpResponse:
    body = {
        "schedule_id": schedule_id,
        "active": active,
        "items_count": 2,
        "cron": "0 16 * * *",
        "end_time": "2032-12-01 16:00:00",
        "next_run_at": "2025-03-01 16:00:00",
        "stats": {
            "total_job_count": 2,
            "job_create_outcomes": [{"status_code": 202, "job_count": 2, "ratio": 1}],
            "job_result_outcomes": [{"status": "done", "job_count": 2, "ratio": 1}],
        },
    }
    return raw_json(orjson.dumps(body).decode())


def run_job(
    job_id: int = SCHEDULER_JOB_ID, result_status: str = "done", create_status_code: int = 202
) -> dict[str, Any]:
    return {
        "id": job_id,
        "create_status_code": create_status_code,
        "result_status": result_status,
        "created_at": CREATED,
        "result_created_at": FINISHED if result_status == "done" else None,
    }


def runs_response(run_id: int, *jobs: dict[str, Any]) -> HttpResponse:
    """`{"runs": [{run_id, jobs, success_rate}]}` (the published sample's shape)."""
    return raw_json(
        orjson.dumps({"runs": [{"run_id": run_id, "jobs": list(jobs), "success_rate": 1}]}).decode()
    )


# -- journal rows (what the collector is handed) ------------------------------------------------
def journal_job(
    job_id: str = JOB_ID, value: str = "adidas", status: str = "pending", **params: Any
) -> dict[str, Any]:
    """A journal `jobs` row as `Journal.open_jobs` returns it."""
    return {
        "job_id": job_id,
        "kind": "query",
        "value": value,
        "status": status,
        "params": orjson.dumps({"source": "google_search", **params}).decode(),
    }
