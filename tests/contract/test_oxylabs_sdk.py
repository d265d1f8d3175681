"""The Oxylabs sandbox as real clients see it: the official SDK and the documented requests.

The official SDK (`oxylabs` 3.0.0) covers push-pull through its asynchronous client: submit one
job (`POST /v1/queries`), poll its status (`GET /v1/queries/{id}`) and fetch its results
(`GET /v1/queries/{id}/results`). It has no method for the batch endpoint, the callbacker IPs or
the Scheduler, so those are driven with the requests the documentation's own Python examples
make (docs/oxylabs.md#public-documentation). Every answer must parse as those clients expect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from oxylabs import AsyncClient
from oxylabs.sources.response import Response

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.oxylabs import OxylabsAPI
from scrapesync.sandbox.oxylabs_data import DEFAULT_PASSWORD, DEFAULT_USER, FIRST_SCHEDULE_ID

AUTH = (DEFAULT_USER, DEFAULT_PASSWORD)
# the SDK polls every `poll_interval` seconds (whole seconds) until `job_completion_timeout`
POLL = {"poll_interval": 1, "job_completion_timeout": 20}


@dataclass
class Oxylabs:
    sandbox: Sandbox
    api: OxylabsAPI
    url: str


@pytest.fixture
def oxylabs(make_sandbox: Callable[..., Sandbox]) -> Oxylabs:
    sandbox = make_sandbox(oxylabs={"schedules": 1})
    api = sandbox.providers["oxylabs"]
    assert isinstance(api, OxylabsAPI)
    return Oxylabs(sandbox, api, sandbox.url("oxylabs"))


@pytest.fixture
def sdk(oxylabs: Oxylabs, monkeypatch: pytest.MonkeyPatch) -> AsyncClient:
    # the SDK reads its push-pull base URL from this module constant when a client is built
    monkeypatch.setattr("oxylabs.internal.api.ASYNC_BASE_URL", f"{oxylabs.url}/v1/queries")
    return AsyncClient(*AUTH)


async def _finish_when_submitted(oxylabs: Oxylabs, jobs: int, fault: str) -> None:
    """Once `jobs` new jobs exist (the SDK is polling them), let the one for `fault` fail with
    612 and advance the sandbox's clock: the others finish."""
    before = len(oxylabs.api.jobs)
    while len(oxylabs.api.jobs) < before + jobs:
        await asyncio.sleep(0.02)
    for job in oxylabs.api.jobs.values():
        if fault in (job.job.get("url"), job.job.get("query")):
            job.fault_code = 612
    await asyncio.to_thread(oxylabs.sandbox.advance)


def _scrape(oxylabs: Oxylabs, calls: list[Any], fault: str) -> list[Response]:
    async def run() -> list[Response]:
        finishing = asyncio.create_task(_finish_when_submitted(oxylabs, len(calls), fault))
        answers = await asyncio.gather(*calls)
        await finishing
        return list(answers)

    return asyncio.run(run())


def test_given_the_sdk_async_client_then_submit_poll_and_results_parse(
    oxylabs: Oxylabs, sdk: AsyncClient
) -> None:
    calls = [
        sdk.google.scrape_search("adidas", parse=True, **POLL),
        sdk.universal.scrape_url("https://shop.example.com/1", **POLL),
        sdk.universal.scrape_url("https://shop.example.com/2", **POLL),
    ]

    parsed, faulted, raw = _scrape(oxylabs, calls, fault="https://shop.example.com/1")

    assert parsed.job.status == "done"
    assert parsed.job.source == "google_search"
    assert parsed.job.query == "adidas"
    assert len(parsed.job.id) == 19
    assert {link.rel for link in parsed.job.links} >= {"self", "results"}
    assert isinstance(parsed.results[0].content, dict)
    assert parsed.results[0].content["parse_status_code"] == 12000
    assert parsed.results[0].page == 1
    assert parsed.results[0].job_id == parsed.job.id
    assert raw.job.url == "https://shop.example.com/2"
    assert raw.results[0].status_code == 200
    assert raw.results[0].content.startswith("<!doctype html>")
    assert faulted.job.status == "faulted"
    assert faulted.results[0].status_code == 612
    assert faulted.results[0].content == {"parse_status_code": 12003}


def test_given_a_batch_as_documented_then_every_value_is_a_job_with_its_links(
    oxylabs: Oxylabs,
) -> None:
    payload = {"query": ["adidas", "nike", "reebok"], "source": "google_search", "domain": "com"}

    response = requests.request("POST", f"{oxylabs.url}/v1/queries/batch", auth=AUTH, json=payload)

    assert response.status_code == 202
    queries = response.json()["queries"]
    assert [job["query"] for job in queries] == payload["query"]
    assert all(isinstance(job["id"], str) and len(job["id"]) == 19 for job in queries)
    assert all(job["status"] == "pending" for job in queries)
    results = next(link["href"] for link in queries[0]["_links"] if link["rel"] == "results")
    assert results.startswith("http://")
    assert results.endswith(f"/{queries[0]['id']}/results")


def test_given_job_status_and_results_as_documented_then_204_until_done_then_pages(
    oxylabs: Oxylabs,
) -> None:
    job = requests.request(
        "POST",
        f"{oxylabs.url}/v1/queries",
        auth=AUTH,
        json={"source": "universal", "url": "https://www.example.com"},
    ).json()
    results_url = f"{oxylabs.url}/v1/queries/{job['id']}/results"

    pending = requests.request("GET", results_url, auth=AUTH)
    oxylabs.sandbox.advance()
    status = requests.request("GET", f"{oxylabs.url}/v1/queries/{job['id']}", auth=AUTH).json()
    done = requests.request("GET", f"{results_url}?type=raw", auth=AUTH).json()

    assert (pending.status_code, pending.content) == (204, b"")
    assert status["status"] == "done"
    assert status["updated_at"] >= status["created_at"]
    page = done["results"][0]
    assert set(page) >= {"content", "created_at", "updated_at", "page", "url", "job_id"}
    assert (page["job_id"], page["status_code"], page["type"]) == (job["id"], 200, "raw")


def test_given_the_callbacker_ips_endpoint_then_it_lists_addresses(oxylabs: Oxylabs) -> None:
    body = requests.request("GET", f"{oxylabs.url}/v1/info/callbacker_ips", auth=AUTH).json()

    assert body == {"ips": oxylabs.api.callbacker_ips}


def test_given_the_scheduler_as_documented_then_create_list_read_runs_and_state_parse(
    oxylabs: Oxylabs,
) -> None:
    base = f"{oxylabs.url}/v1/schedules"
    created = requests.request(
        "POST",
        base,
        auth=AUTH,
        json={
            "cron": "0 3 * * 1",
            "items": [{"source": "google_search", "query": "stuff"}],
            "end_time": "2032-12-21 12:34:45",
        },
    ).json()
    # ids are unquoted JSON integers above 2^53: the raw text must carry them digit for digit
    listed = requests.request("GET", base, auth=AUTH)
    sid = created["schedule_id"]
    detail = requests.request("GET", f"{base}/{sid}", auth=AUTH).json()
    stopped = requests.request("PUT", f"{base}/{sid}/state", auth=AUTH, json={"active": False})
    first = next(iter(oxylabs.api.schedules))
    runs = requests.request("GET", f"{base}/{first}/runs", auth=AUTH).json()["runs"]

    assert sid > 2**53
    assert str(sid) in listed.text
    assert listed.json()["schedules"] == [first, sid]
    assert (created["active"], created["items_count"], created["cron"]) == (True, 1, "0 3 * * 1")
    assert set(detail) >= {"schedule_id", "active", "next_run_at", "stats"}
    assert set(detail["stats"]) == {"total_job_count", "job_create_outcomes", "job_result_outcomes"}
    assert (stopped.status_code, stopped.content) == (202, b"")
    assert oxylabs.api.schedules[sid].active is False
    job = runs[0]["jobs"][0]
    assert isinstance(job["id"], int)
    assert job["id"] > 2**53
    assert set(job) == {
        "id",
        "create_status_code",
        "result_status",
        "created_at",
        "result_created_at",
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v1/queries", {"source": "universal"}, 400, "one `query` or `url`"),
        ("POST", "/v1/queries/batch", {"url": ["a"]}, 400, "source: Missing data"),
        ("POST", "/v1/schedules", {"cron": "* * * * *"}, 400, "items: Missing data"),
        ("GET", "/v1/queries/1", None, 404, "no longer available"),
        ("PUT", f"/v1/schedules/{FIRST_SCHEDULE_ID}/state", {"active": "no"}, 400, "boolean"),
    ],
)
def test_given_bad_requests_then_errors_come_in_oxylabs_envelope(
    oxylabs: Oxylabs, method: str, path: str, body: Any, status: int, message: str
) -> None:
    response = requests.request(method, f"{oxylabs.url}{path}", auth=AUTH, json=body)

    assert response.status_code == status
    assert message in response.json()["message"]


def test_given_wrong_credentials_then_the_documented_401_messages(oxylabs: Oxylabs) -> None:
    url = f"{oxylabs.url}/v1/info/callbacker_ips"

    missing = requests.request("GET", url).json()
    wrong = requests.request("GET", url, auth=(DEFAULT_USER, "nope")).json()
    bearer = requests.request("GET", url, headers={"Authorization": "Bearer x"}).json()

    assert missing == {"message": "Authorization header not provided"}
    assert wrong == {"message": "Client not found"}
    assert bearer == {"message": "Invalid authorization header"}
