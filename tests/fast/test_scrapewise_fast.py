"""Scrapewise in milliseconds: paginators, error parsing, hints, transforms and actions.

The real source, resources and client run over in-process HTTP (`http` fixture): no sandbox
server, no DuckDB. Requests and answers are built from the documented pages
(`builders_scrapewise`), and every request the code sends must be one the test declared.
"""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from builders_scrapewise import (
    API_KEY,
    GROUP,
    SCRAPER_ID,
    ErrorResponse,
    GroupDataRequest,
    LoadHistoryRequest,
    RunBuilder,
    SpringPageResponse,
    delete_data_request,
    job_errors_request,
    json_list,
    merge_request,
    oid,
    preview_delete_request,
)
from dlt.extract import DltSource
from dlt.extract.exceptions import ResourceExtractionError
from httpmock import HttpMocker, HttpResponse

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.scrapewise import scrapewise_source
from scrapesync.sources.scrapewise.actions import commit_delete, merge_runs, preview_delete
from scrapesync.sources.scrapewise.client import make_client
from scrapesync.sources.scrapewise.history import Pass, Scope, read_pass
from scrapesync.sources.scrapewise.settings import DEFAULT_PAGE_SIZE, LOAD_HISTORY
from scrapesync.sources.scrapewise.transform import (
    data_rows,
    enriched_rows,
    error_rows,
    job_row,
    scraper_row,
)


def source(
    http: HttpMocker,
    page_size: int = DEFAULT_PAGE_SIZE,
    group_ids: list[str] | None = None,
    with_deleted: bool = False,
) -> DltSource:
    # one worker: per-run requests go out in a stable order
    return scrapewise_source(
        api_key=API_KEY,
        base_url=http.base_url,
        group_ids=group_ids,
        with_deleted=with_deleted,
        page_size=page_size,
        concurrency=1,
    )


def client(http: HttpMocker) -> ProviderRESTClient:
    return make_client(API_KEY, http.base_url)


def api_error(excinfo: pytest.ExceptionInfo[ResourceExtractionError]) -> ProviderAPIError:
    cause = excinfo.value.__cause__
    assert isinstance(cause, ProviderAPIError), excinfo.value
    return cause


# -- paginators -------------------------------------------------------------------------------
def test_given_three_history_pages_then_jobs_reads_each_page_once_newest_first(
    http: HttpMocker,
) -> None:
    runs = [RunBuilder.completed(n).build() for n in (6, 5, 4, 3, 2)]
    pages = [runs[0:2], runs[2:4], runs[4:5]]
    for number, content in enumerate(pages):
        http.get(
            LoadHistoryRequest().size(2).page(number).build(),
            SpringPageResponse(content, size=2).page(number).totals(5, 3).build(),
        )

    rows = list(source(http, page_size=2).with_resources("jobs"))

    assert [row["id"] for row in rows] == [run["id"] for run in runs]
    assert [call.qs["page"] for call in http.calls(LOAD_HISTORY.path)] == [["0"], ["1"], ["2"]]


def test_given_an_empty_page_before_total_pages_then_the_history_read_stops(
    http: HttpMocker,
) -> None:
    http.get(
        LoadHistoryRequest().size(1).page(0).build(),
        SpringPageResponse([RunBuilder.completed(1).build()], size=1).totals(1, 50).build(),
    )
    http.get(
        LoadHistoryRequest().size(1).page(1).build(),
        SpringPageResponse([], size=1).page(1).totals(1, 50).build(),
    )

    rows = list(source(http, page_size=1).with_resources("jobs"))

    assert len(rows) == 1
    assert len(http.calls(LOAD_HISTORY.path)) == 2  # not the 50 pages `totalPages` claims


def test_given_a_floor_then_the_history_read_stops_at_the_first_older_run(
    http: HttpMocker,
) -> None:
    newer, at_floor, older = (RunBuilder.completed(n).build() for n in (9, 8, 7))
    # page 1 is never declared: asking for it would fail the test
    http.get(
        LoadHistoryRequest().size(3).page(0).build(),
        SpringPageResponse([newer, at_floor, older], size=3).totals(9, 3).build(),
    )
    seen = Pass(pendulum.parse(at_floor["started"]))  # type: ignore[arg-type]

    pages = list(read_pass(client(http), Scope(), seen.floor, 3, False, seen))

    assert [run["id"] for page in pages for run in page] == [newer["id"], at_floor["id"]]
    assert (seen.reached_end, seen.totals) == (False, [9])


def test_given_groups_and_deleted_runs_asked_for_then_the_history_is_read_per_scope(
    http: HttpMocker,
) -> None:
    http.get(
        LoadHistoryRequest().scope(groupId=GROUP).with_deleted().build(),
        SpringPageResponse([RunBuilder.running(1).with_field("deleted", True).build()]).build(),
    )

    rows = list(source(http, group_ids=[GROUP], with_deleted=True).with_resources("jobs"))

    assert [(row["state"], row["is_deleted"]) for row in rows] == [("RUNNING", True)]


def test_given_a_finished_run_then_its_rows_are_read_by_run_filter_in_stable_order(
    http: HttpMocker,
) -> None:
    run = RunBuilder.completed(1).with_items(3).build()
    http.get(LoadHistoryRequest().build(), SpringPageResponse([run]).build())
    first = [{"_id": "a", "_scrapedAt": "2026-05-19T01:01:00Z", "price": 9.5}]
    rest = [{"_id": "b", "_scrapedAt": "2026-05-19T01:01:07Z"}, {"_id": "c"}]
    http.get(
        GroupDataRequest().of_run(run["id"]).page(0).build(),
        SpringPageResponse(first).totals(3, 2).build(),
    )
    http.get(
        GroupDataRequest().of_run(run["id"]).page(1).build(),
        SpringPageResponse(rest).page(1).totals(3, 2).build(),
    )

    rows = list(source(http).resources["rows"])

    assert [(row["_id"], row["row_index"], row["job_id"]) for row in rows] == [
        ("a", 0, run["id"]),
        ("b", 1, run["id"]),
        ("c", 2, run["id"]),
    ]
    assert rows[0]["price"] == 9.5  # the scraper's own fields keep their names


def test_given_open_or_empty_runs_then_no_rows_or_links_are_asked_for(http: HttpMocker) -> None:
    running = RunBuilder.running(2).with_items(4).with_errors(1).build()
    empty = RunBuilder.completed(1).build()  # itemsQuantity 0, errorLinks 0
    http.get(LoadHistoryRequest().build(), SpringPageResponse([running, empty]).build())

    rows = list(source(http).with_resources("jobs", "job_errors", "rows"))

    # only the two `jobs` rows: a RUNNING run's partial rows wait until it is terminal
    assert sorted(row["id"] for row in rows) == sorted([running["id"], empty["id"]])


def test_given_failed_links_then_job_errors_has_one_row_per_url(http: HttpMocker) -> None:
    run = RunBuilder.completed(1).with_errors(3).build()
    http.get(LoadHistoryRequest().build(), SpringPageResponse([run]).build())
    links: list[dict[str, Any]] = [
        {"url": "https://example.com/p/1", "status": 503, "error": "Upstream unavailable"},
        {"url": "https://example.com/p/2", "status": None, "error": "Timeout after 30s"},
        {"url": "https://example.com/p/1", "status": 404, "error": "Not Found"},
    ]
    http.get(job_errors_request(run["id"]), json_list(links))

    rows = list(source(http).resources["job_errors"])

    assert [(row["url"], row["status"]) for row in rows] == [
        ("https://example.com/p/1", 404),  # the last report of a URL wins
        ("https://example.com/p/2", None),
    ]
    assert {row["job_id"] for row in rows} == {run["id"]}


# -- error parsing ----------------------------------------------------------------------------
def test_given_a_refused_filter_then_the_error_carries_detail_code_and_the_setting(
    http: HttpMocker,
) -> None:
    error = ErrorResponse(400, "Malformed filters JSON").with_code("INVALID_FILTER")
    http.get(LoadHistoryRequest().build(), error.with_correlation("req_abc123").build())

    with pytest.raises(ResourceExtractionError) as excinfo:
        list(source(http).with_resources("jobs"))

    failure = api_error(excinfo)
    assert str(failure).startswith(
        "scrapewise: GET /api/scraper/load-history returned HTTP 400: Malformed filters JSON "
        "[code INVALID_FILTER] (correlationId req_abc123)"
    )
    assert "`sources.scrapewise.group_ids`" in failure.hint


def test_given_an_unknown_run_then_the_hint_names_the_run_and_its_group(http: HttpMocker) -> None:
    run = RunBuilder.completed(1).with_errors(1).build()
    http.get(LoadHistoryRequest().build(), SpringPageResponse([run]).build())
    path = job_errors_request(run["id"]).path
    http.get(job_errors_request(run["id"]), ErrorResponse(400, "No run", path).build())

    with pytest.raises(ResourceExtractionError) as excinfo:
        list(source(http).resources["job_errors"])

    assert api_error(excinfo).hint.startswith(f"run {run['id']} is not visible in group {GROUP}")


def test_given_a_bad_key_then_the_sdk_message_shape_is_read_and_the_key_is_never_shown(
    http: HttpMocker,
) -> None:
    http.get(LoadHistoryRequest().build(), HttpResponse(status=401, json={"message": "nope"}))

    with pytest.raises(ResourceExtractionError) as excinfo:
        list(source(http).with_resources("jobs"))

    failure = api_error(excinfo)
    assert (failure.status, failure.detail) == (401, "nope")
    assert "SOURCES__SCRAPEWISE__API_KEY" in failure.hint
    assert API_KEY not in str(failure)


def test_given_a_run_without_a_state_then_the_sync_refuses_the_page(http: HttpMocker) -> None:
    run = RunBuilder.completed(1).without("state").build()
    http.get(LoadHistoryRequest().build(), SpringPageResponse([run]).build())

    with pytest.raises(ResourceExtractionError) as excinfo:
        list(source(http).with_resources("jobs"))

    assert "malformed response: a run lacks state" in str(api_error(excinfo))


def test_given_failed_links_that_are_not_a_list_then_a_malformed_response_error(
    http: HttpMocker,
) -> None:
    run = RunBuilder.completed(1).with_errors(1).build()
    http.get(LoadHistoryRequest().build(), SpringPageResponse([run]).build())
    http.get(job_errors_request(run["id"]), HttpResponse(json={"error": "oops"}))

    with pytest.raises(ResourceExtractionError) as excinfo:
        list(source(http).resources["job_errors"])

    assert "malformed response: expected a JSON array, got dict" in str(api_error(excinfo))


# -- hints ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "primary_key", "merge_key"),
    [
        ("jobs", ["id"], []),
        ("job_errors", ["job_id", "url"], []),
        ("rows", ["job_id", "row_index"], ["job_id"]),
        ("scrapers", ["id"], []),
        ("enriched_rows", ["group_id", "row_index"], ["group_id"]),
    ],
)
def test_every_resource_declares_its_keys_and_delete_insert_merge(
    http: HttpMocker, resource: str, primary_key: list[str], merge_key: list[str]
) -> None:
    schema = source(http).resources[resource].compute_table_schema()

    columns = schema["columns"]
    assert schema.get("write_disposition") == "merge"
    assert schema.get("x-merge-strategy") == "delete-insert"
    assert [name for name, col in columns.items() if col.get("primary_key")] == primary_key
    assert [name for name, col in columns.items() if col.get("merge_key")] == merge_key


# -- transforms -------------------------------------------------------------------------------
def test_job_row_types_its_times_and_flags_soft_deleted_runs() -> None:
    run = RunBuilder.completed(1).with_field("deleted", True).started("not a time").build()

    row = job_row(run)

    assert row["started"] is None  # unparsable stays empty rather than failing the sync
    assert row["finished"] == pendulum.datetime(2026, 5, 19, 1, 5, 23)
    assert (row["is_deleted"], "deleted" in row) == (True, False)
    assert job_row(RunBuilder.running(2).build(), vanished=True)["is_deleted"] is True


def test_rows_take_their_scrape_time_from_the_docs_or_the_sdk_fields() -> None:
    run = RunBuilder.completed(1).build()
    rows = [{"_scrapedAt": "2026-05-19T01:01:00Z"}, {"_sw_run_date": "2026-05-19"}, {}]

    shaped = data_rows(run, rows)

    assert [row["scraped_at"] for row in shaped] == [
        pendulum.datetime(2026, 5, 19, 1, 1),
        pendulum.datetime(2026, 5, 19),
        None,
    ]
    assert error_rows(run, [{"status": 500}]) == []  # a link without a URL has no key


def test_an_emptied_enriched_dataset_becomes_one_hard_delete_marker() -> None:
    group, sibling = {"id": GROUP}, {"id": oid(99)}

    marker = {"group_id": GROUP, "enriched_group_id": oid(99), "_version": "v1"}
    assert enriched_rows(group, sibling, [], "v1") == [
        {**marker, "row_index": -1, "_deleted": True}
    ]
    rows = enriched_rows(group, sibling, [{"title": "4012345678901"}], "v2")
    assert [(row["row_index"], row["_deleted"]) for row in rows] == [(0, False)]


def test_scraper_row_flattens_the_config_into_a_summary() -> None:
    full = {
        "config": {
            "type": "SIMPLE",
            "itemsConfig": [{"name": "price"}, {"name": "in_stock"}],
            "postProcessRules": [{}, {}],
            "sourceConfig": {"url": "https://shop.example", "pagination": {"max": 5}},
        },
        "updatedAt": "2026-05-19T10:00:00Z",
    }

    row = scraper_row({"id": SCRAPER_ID, "name": "offers", "lastRunState": "RUNNING"}, full)

    assert (row["config_type"], row["item_fields"], row["post_process_rules"]) == (
        "SIMPLE",
        "price,in_stock",
        2,
    )
    assert (row["source_url"], row["pagination_max"]) == ("https://shop.example", 5)
    assert (row["name"], row["last_run_state"], row["is_deleted"]) == ("offers", "RUNNING", False)


# -- actions ----------------------------------------------------------------------------------
def test_merge_sends_every_run_with_one_idempotency_key(http: HttpMocker) -> None:
    jobs = [oid(1), oid(2)]
    http.put(merge_request(jobs, "key-1"), HttpResponse(json={"mergedItems": 184}))

    assert merge_runs(client(http), GROUP, jobs, idempotency_key="key-1") == 184


def test_a_merge_of_nothing_explains_which_runs_merge_accepts(http: HttpMocker) -> None:
    jobs = [oid(1)]
    refusal = ErrorResponse(422, "Zero rows merged").with_code("NOTHING_MERGED").build()
    http.put(merge_request(jobs, "key-2"), refusal)

    with pytest.raises(ProviderAPIError) as excinfo:
        merge_runs(client(http), GROUP, jobs, idempotency_key="key-2")

    assert "latest COMPLETED run of its scraper" in excinfo.value.hint


def test_delete_sends_the_preview_token_and_refuses_an_expired_preview(http: HttpMocker) -> None:
    job = oid(7)
    preview = {"token": "7c8d-tok", "previewSummary": {"cascadeCounts": {"rows": 12}}}
    http.post(preview_delete_request(job), HttpResponse(json=preview))
    http.delete(delete_data_request(job, "7c8d-tok", "key-3"), HttpResponse(status=204))
    api = client(http)

    minted = preview_delete(api, job)
    with pytest.raises(ValueError, match="expired"):
        commit_delete(api, minted, "key-3", now=lambda: minted.minted_at + 300)
    commit_delete(api, minted, "key-3")

    assert "rows: 12" in minted.describe()
    assert len(http.calls("/api/scraper/data")) == 1  # the expired attempt sent nothing
