"""Contract: Scrapewise's official SDK (`scrapewise` 0.1.0, the dev extra) against the sandbox.

Every call a real client makes must parse and make sense: the runs, failed links, rows,
scrapers and groups the SDK reads, the actions it triggers, and the errors it maps to its own
exception types. Routes the SDK does not wrap (stop, merge, the two-call delete) go through the
SDK's own transport (`_request`), so its error mapping and body decoding still apply. The SDK's
base URL is the API root plus `/api`, as in production (docs/scrapewise.md#auth).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scrapewise import (
    ScrapewiseAuthError,
    ScrapewiseBadRequestError,
    ScrapewiseClient,
    ScrapewiseError,
    ScrapewiseNotFoundError,
    ScrapewiseRateLimitError,
)

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.scrapewise import DEFAULT_KEY, ScrapewiseAPI
from scrapesync.sources.common.timeutil import parse_datetime

BASE_PATH = "/api/scraper-api"


def sdk_for(sandbox: Sandbox, key: str = DEFAULT_KEY) -> ScrapewiseClient:
    return ScrapewiseClient(api_key=key, base_url=sandbox.url("scrapewise") + "/api", timeout=10)


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(scrapewise={"runs_per_scraper": 3})


@pytest.fixture
def sdk(sandbox: Sandbox) -> Iterator[ScrapewiseClient]:
    with sdk_for(sandbox) as client:
        yield client


def account(sandbox: Sandbox) -> ScrapewiseAPI:
    api = sandbox.providers["scrapewise"]
    assert isinstance(api, ScrapewiseAPI)
    return api


def history(sdk: ScrapewiseClient, scraper_id: str) -> list[dict[str, Any]]:
    page = sdk.get_load_history(scraper_id, size=1000)
    assert page["totalElements"] == len(page["content"])
    return list(page["content"])


def body(error: ScrapewiseError) -> dict[str, Any]:
    """The decoded error body (the SDK keeps it raw on `.body`, decoded on `.payload`)."""
    payload = error.payload
    assert isinstance(payload, dict), error.body
    return payload


def duration_of(run: dict[str, Any]) -> float:
    started, finished = parse_datetime(run["started"]), parse_datetime(run["finished"])
    assert started is not None
    assert finished is not None
    return (finished - started).total_seconds()


def test_scrapers_and_groups_parse_with_their_documented_projections(
    sdk: ScrapewiseClient, sandbox: Sandbox
) -> None:
    data = account(sandbox).data

    scrapers = sdk.list_scrapers()
    groups = sdk.list_groups()

    assert {s["id"] for s in scrapers} == set(data.scrapers)
    assert all("schemaId" not in s for s in scrapers)  # the list projection omits it
    assert {g["id"] for g in groups} == set(data.groups)
    full = sdk.get_scraper(scrapers[0]["id"])
    assert full["config"]["type"] == "SIMPLE"  # config type, not the top-level scraper type
    assert full["type"] in ("SINGLE_PRODUCT", "MULTIPLE_PRODUCTS")
    assert full["lastRunState"] == scrapers[0]["lastRunState"]


def test_run_history_is_newest_first_and_every_duration_is_positive(
    sdk: ScrapewiseClient, sandbox: Sandbox
) -> None:
    for scraper_id in account(sandbox).data.scrapers:
        runs = history(sdk, scraper_id)
        started = [run["started"] for run in runs]
        assert started == sorted(started, reverse=True)
        assert sdk.latest_run(scraper_id) == runs[0]
        for run in runs:
            assert run["scraperId"] == scraper_id
            if run["finished"] is not None:
                assert run["duration"] == duration_of(run) >= 0


def test_stop_then_run_leaves_the_new_run_as_the_latest_one(
    sdk: ScrapewiseClient, sandbox: Sandbox
) -> None:
    data = account(sandbox).data
    scraper_id = next(s for s in data.scrapers if data.active_run(s) is not None)
    active = data.active_run(scraper_id)
    assert active is not None

    assert sdk._request("POST", f"/scraper/{scraper_id}/stop") == {}  # 200, empty body
    assert sdk.run_scraper(scraper_id) == {"firstJob": False}

    stopped = next(run for run in history(sdk, scraper_id) if run["id"] == active.id)
    assert (stopped["state"], stopped["stopReason"]) == ("STOPPED", "USER_STOPPED")
    assert stopped["duration"] >= 0
    newest = sdk.latest_run(scraper_id)
    assert newest is not None
    latest: dict[str, Any] = dict(newest)  # the SDK's type omits `started` and `finished`
    assert (latest["state"], latest["id"] != active.id) == ("PENDING", True)
    assert latest["started"] > stopped["finished"]


def test_rows_and_failed_links_of_a_run_parse(sdk: ScrapewiseClient, sandbox: Sandbox) -> None:
    data = account(sandbox).data
    group = next(iter(data.groups))
    run = next(r for r in data.terminal_runs() if r.group_id == group and r.error_links)

    first = sdk.get_group_data(group, page=0, size=5)
    rows = sdk.iter_group_data(group, size=7)
    links = sdk.get_job_errors(group, run.id)

    assert len(first["content"]) == 5
    assert first["totalElements"] == len(rows) == len(data.rows[group])
    assert {"_scraperJobStatusId", "_sw_run_date", "title", "url"} <= set(rows[0])
    assert len(links) == run.error_links
    assert all({"url", "status", "error"} == set(link) for link in links)


def test_merge_fills_the_enriched_sibling_the_sdk_can_read(
    sdk: ScrapewiseClient, sandbox: Sandbox
) -> None:
    data = account(sandbox).data
    group = next(iter(data.groups))
    latest = [
        run_id
        for s in data.scrapers.values()
        if s["groupId"] == group and (run_id := data._latest_completed(s["id"])) is not None
    ]
    key = {"Idempotency-Key": str(uuid.uuid4())}

    merged = sdk._request(
        "PUT",
        f"/scraper/data/group/{group}/merge",
        params={"scraperJobStatusIds": latest},
        headers=key,
    )

    assert merged["mergedItems"] > 0
    name = next(g["name"] for g in sdk.list_groups() if g["id"] == group)
    sibling = next(g for g in sdk.list_groups() if g["name"] == f"{name}_enriched")
    assert len(sdk.iter_group_data(sibling["id"])) == merged["mergedItems"]


def test_the_two_call_delete_previews_then_deletes_a_runs_rows(
    sdk: ScrapewiseClient, sandbox: Sandbox
) -> None:
    data = account(sandbox).data
    group = next(iter(data.groups))
    run = next(r for r in data.terminal_runs() if r.group_id == group and r.success_links)
    job = {"scraperJobStatusId": run.id}

    preview = sdk._request("POST", "/scraper/data/preview-delete", params=job)
    params = {**job, "token": preview["token"]}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    committed = sdk._request("DELETE", "/scraper/data", params=params, headers=headers)

    assert preview["targetEntityId"] == run.id
    assert preview["previewSummary"]["cascadeCounts"]["rows"] > 0
    assert committed == {}  # 204 No Content
    rows = sdk.iter_group_data(group, size=100)
    assert all(row["_scraperJobStatusId"] != run.id for row in rows)


def test_errors_map_to_the_sdk_types_with_an_rfc7807_body_naming_the_request(
    sdk: ScrapewiseClient, sandbox: Sandbox
) -> None:
    data = account(sandbox).data
    scraper_id = next(s for s in data.scrapers if data.active_run(s) is not None)
    unknown = "f" * 24

    with pytest.raises(ScrapewiseBadRequestError) as busy:
        sdk.run_scraper(scraper_id)
    with pytest.raises(ScrapewiseBadRequestError) as missing:
        sdk.get_scraper(unknown)
    with pytest.raises(ScrapewiseNotFoundError) as no_route:
        sdk._request("GET", "/scraper/no/such/route")
    with (
        sdk_for(sandbox, key="sw_live_wrong.key") as stranger,
        pytest.raises(ScrapewiseAuthError) as refused,
    ):
        stranger.list_groups()

    assert "already in RUNNING or PENDING" in body(busy.value)["detail"]
    assert body(busy.value)["instance"] == f"{BASE_PATH}/api/scraper/{scraper_id}/run"
    assert body(missing.value)["instance"] == f"{BASE_PATH}/api/scraper/{unknown}"
    assert body(no_route.value)["instance"] == f"{BASE_PATH}/api/scraper/no/such/route"
    unauthorised = body(refused.value)
    assert (unauthorised["status"], unauthorised["code"]) == (401, "unauthorized")
    assert unauthorised["instance"] == f"{BASE_PATH}/api/scraper/group/list"
    assert unauthorised["correlationId"].startswith("req_")


def test_the_rate_limit_is_a_429_the_sdk_reports_as_such(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = make_sandbox(scrapewise={"rate_limit": (0.001, 1)})  # one request, then none

    with sdk_for(sandbox) as sdk:
        sdk.list_groups()
        with pytest.raises(ScrapewiseRateLimitError) as throttled:
            sdk.list_scrapers()

    assert body(throttled.value)["code"] == "rate_limited"
    assert body(throttled.value)["instance"] == f"{BASE_PATH}/api/scraper/list"
