"""Outscraper in milliseconds: pagination, errors in 200 bodies, removals, requests, hints,
transforms.

Every test drives the real source, client or CLI action against in-process HTTP (`http`), with
the answers built by `builders_outscraper`; no sandbox server, no DuckDB. The end-to-end
behaviour (a real pipeline, the destination, crashes, webhooks) stays in tests/test_outscraper*.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from builders_outscraper import (
    API_KEY,
    UNAUTHORIZED,
    Json,
    OutscraperRequests,
    TaskBuilder,
    at,
    csv_file,
    extract,
    json_file,
    outscraper_error,
    place,
    request_answer,
    request_list,
    task_answer,
    task_id,
    task_page,
)
from httpmock import HttpMocker, HttpRequest, HttpResponse

from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.outscraper import outscraper_source
from scrapesync.sources.outscraper.cli import run_action
from scrapesync.sources.outscraper.client import OutscraperClient, SkipPaginator
from scrapesync.sources.outscraper.settings import ENDPOINTS
from scrapesync.sources.outscraper.transform import (
    query_count,
    request_rows,
    results_fingerprint,
    task_row,
)
from scrapesync.sources.outscraper.webhooks import parse, signature, verify

DOCS = Path(__file__).resolve().parents[2] / "docs" / "outscraper.md"
REQ = OutscraperRequests()
T1, T2, T3 = task_id(1, hour=3), task_id(2, hour=2), task_id(3, hour=1)


def source(http: HttpMocker, **options: Any) -> Any:
    defaults: Json = {"use_webhooks": False, "discover_requests": False}
    return outscraper_source(api_key=API_KEY, base_url=http.base_url, **{**defaults, **options})


def requests_only(http: HttpMocker, **options: Any) -> Any:
    """The source with `request_results` (and its `requests` rows) only: no task listing."""
    return source(http, **options).with_resources("request_results")


def running(number: str) -> TaskBuilder:
    return TaskBuilder(number).running()


def state_knowing(*tasks: tuple[str, str]) -> Json:
    """The pipeline state a sync leaves that loaded `(task id, status)` tasks (no files)."""
    known = {tid: [at(1), status, at(0)] for tid, status in tasks}
    return {"sources": {"outscraper": {"resources": {"tasks": {"known": known}}}}}


# -- pagination --------------------------------------------------------------------------------


def test_given_keyset_pages_then_each_next_page_starts_after_the_last_id_until_has_more_ends(
    http: HttpMocker,
) -> None:
    base = http.base_url
    http.get(REQ.list_tasks(2), task_page([running(T1), running(T2)], True, base))
    http.get(REQ.list_tasks(2, last_id=T2), task_page([running(T3)], False, base))

    synced = extract(source(http, page_size=2), {})

    assert [row["id"] for row in synced.tasks] == [T1, T2, T3]
    assert len(http.calls("/tasks")) == 2


def test_given_has_more_with_an_empty_page_then_the_listing_ends_there(http: HttpMocker) -> None:
    http.get(REQ.list_tasks(), task_page([running(T1)], True, http.base_url))
    http.get(REQ.list_tasks(last_id=T1), task_page([], True, http.base_url))

    synced = extract(source(http), {})

    assert [row["id"] for row in synced.tasks] == [T1]
    assert len(http.calls("/tasks")) == 2


def test_given_a_page_ending_with_an_id_already_sent_then_the_sync_stops_with_loop_error(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_tasks(), task_page([running(T1)], True, http.base_url))
    http.get(REQ.list_tasks(last_id=T1), task_page([running(T1)], True, http.base_url))

    with pytest.raises(ProviderAPIError, match=f"pagination loops.*{T1}"):
        extract(source(http), {})


def test_given_start_date_then_paging_stops_at_the_first_older_task(http: HttpMocker) -> None:
    new, old = running(T1).created_at(at(5)), running(T2).created_at(at(0))
    http.get(REQ.list_tasks(), task_page([new, old], True, http.base_url))

    synced = extract(source(http, start_date="2025-01-01T02:00:00"), {})

    assert [row["id"] for row in synced.tasks] == [T1]  # has_more was true: no second page


def test_given_requests_pages_then_skip_advances_by_page_size_and_a_short_page_ends_it(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_finished_requests(0, 2), request_list("r1", "r2"))
    http.get(REQ.list_finished_requests(2, 2), request_list("r3"))
    api = OutscraperClient(API_KEY, http.base_url)

    pages = list(api.pages("/requests", {"type": "finished"}, SkipPaginator(2), None))

    assert [[item["id"] for item in page] for page in pages] == [["r1", "r2"], ["r3"]]


# -- errors ------------------------------------------------------------------------------------


def test_given_an_error_message_in_a_200_body_then_the_sync_fails_with_it_and_a_param_hint(
    http: HttpMocker,
) -> None:
    answer = outscraper_error("pageSize must be between 1 and 100", flag=False)
    http.get(REQ.list_tasks(), answer)

    with pytest.raises(ProviderAPIError) as caught:
        extract(source(http), {})

    text = str(caught.value)
    assert text.startswith(
        "outscraper: GET /tasks returned HTTP 200: error in a 200 body: pageSize must be"
    )
    assert "check the request parameters" in text


def test_given_the_documented_401_then_the_error_quotes_it_and_names_the_key_setting(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_tasks(), outscraper_error(UNAUTHORIZED, status=401))

    with pytest.raises(ProviderAPIError) as caught:
        extract(source(http), {})

    assert caught.value.status == 401
    assert caught.value.detail == UNAUTHORIZED
    assert "SOURCES__OUTSCRAPER__API_KEY" in caught.value.hint


@pytest.mark.parametrize(
    ("message", "detail", "hint"),
    [
        (UNAUTHORIZED, "error in a 200 body: 401 Unauthorized", "SOURCES__OUTSCRAPER__API_KEY"),
        (None, "error in a 200 body: error: true without", "check the request parameters"),
    ],
)
def test_given_error_true_with_status_200_then_message_and_hint_follow_the_body(
    http: HttpMocker, message: str | None, detail: str, hint: str
) -> None:
    http.get(REQ.get_request("r1"), outscraper_error(message))

    with pytest.raises(ProviderAPIError) as caught:
        extract(requests_only(http, request_ids=["r1"]), {})

    assert caught.value.detail.startswith(detail)
    assert hint in caught.value.hint


def test_given_actions_then_they_send_put_and_delete_and_print_the_answer(
    http: HttpMocker,
) -> None:
    http.put(
        HttpRequest(f"/tasks/{T1}", headers={"X-API-KEY": API_KEY}),
        HttpResponse(json="Task restarted"),
    )
    http.delete(HttpRequest(f"/tasks/{T2}"), HttpResponse(json="Task removed"))

    restarted = run_action("restart", T1, API_KEY, http.base_url)
    terminated = run_action("terminate", T2, API_KEY, http.base_url)

    assert restarted == f"outscraper: task {T1} restarted (Task restarted)"
    assert terminated == f"outscraper: task {T2} terminated (Task removed)"


def test_given_an_unknown_task_when_restarting_then_the_404_hint_names_the_task(
    http: HttpMocker,
) -> None:
    http.put(HttpRequest(f"/tasks/{T1}"), outscraper_error("Task not found", status=404))

    with pytest.raises(ProviderAPIError, match=f"task '{T1}' does not exist or was removed"):
        run_action("restart", T1, API_KEY, http.base_url)


# -- changes and removals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "gone",
    [outscraper_error("Task not found", status=404), outscraper_error("Task not found")],
    ids=["404", "message in a 200 body"],
)
def test_given_a_known_task_missing_from_the_listing_then_it_is_removed_only_once_confirmed(
    http: HttpMocker, gone: HttpResponse
) -> None:
    http.get(REQ.list_tasks(), task_page([running(T1)], False, http.base_url))
    http.get(REQ.get_task(T2), gone)
    state = state_knowing((T1, "IN_PROGRESS"), (T2, "SUCCESS"))

    synced = extract(source(http), state)

    assert [row["task_id"] for row in synced.removed_tasks] == [T2]
    assert synced.tasks == []  # T1 is unchanged: not rewritten
    assert T2 not in state["sources"]["outscraper"]["resources"]["tasks"]["known"]


def test_given_a_finished_task_then_its_file_is_loaded_once_and_not_again_next_sync(
    http: HttpMocker,
) -> None:
    task = TaskBuilder(T1).with_file("/files/t1")
    http.get(REQ.list_tasks(), task_page([task], False, http.base_url))
    http.get(REQ.result_file("/files/t1"), csv_file("name,rating,zip\nA,4.5,01234\nB,3,10001\n"))
    state: Json = {}

    first = extract(source(http), state)
    second = extract(source(http), state)

    assert [row["id"] for row in first.tasks] == [T1]
    rows = [
        {k: r[k] for k in ("task_id", "file_index", "row_number", "rating", "zip")}
        for r in first.task_results
    ]
    assert rows == [
        {"task_id": T1, "file_index": 0, "row_number": 0, "rating": 4.5, "zip": "01234"},
        {"task_id": T1, "file_index": 0, "row_number": 1, "rating": 3.0, "zip": "10001"},
    ]
    assert (second.tasks, second.task_results) == ([], [])
    assert len(http.calls("/files/t1")) == 1


def test_given_a_restarted_task_then_its_new_delivery_is_loaded_again(http: HttpMocker) -> None:
    task = TaskBuilder(T1).with_file("/files/t1/1")
    again = task.restarted("7f0c4c61-2c1c-4a53-9b43-c29a5b0f8f22", "/files/t1/2")
    http.get(
        REQ.list_tasks(),
        [task_page([task], False, http.base_url), task_page([again], False, http.base_url)],
    )
    http.get(REQ.result_file("/files/t1/1"), json_file([place(1), place(2)]))
    http.get(REQ.result_file("/files/t1/2"), json_file([place(3)]))
    state: Json = {}

    extract(source(http), state)
    second = extract(source(http), state)

    assert [row["place_id"] for row in second.task_results] == ["ChIJ0003"]


def test_given_a_listing_item_without_results_then_the_task_is_read_in_full(
    http: HttpMocker,
) -> None:
    task = running(T1)
    http.get(REQ.list_tasks(), task_page([task.listed_as_summary()], False, http.base_url))
    http.get(REQ.get_task(T1), task_answer(task, http.base_url))

    synced = extract(source(http), {})

    assert synced.tasks[0]["results"][0]["product_name"] == "Google Maps Data"


# -- requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "indexes", "queries"),
    [
        ([[place(1), place(2)], [place(3)]], [(0, 0), (0, 1), (1, 0)], 2),
        ([place(1), place(2), place(3)], [(0, 0), (0, 1), (0, 2)], 1),
    ],
    ids=["one array per query", "flat=true"],
)
def test_given_a_finished_request_then_its_results_are_collected_in_either_documented_shape(
    http: HttpMocker, data: list[Any], indexes: list[tuple[int, int]], queries: int
) -> None:
    http.get(REQ.list_finished_requests(), request_list("r1"))
    http.get(REQ.get_request("r1"), request_answer("r1", "Success", data))

    synced = extract(requests_only(http, discover_requests=True), {})

    assert [(r["query_index"], r["row_index"]) for r in synced.request_results] == indexes
    assert [r["place_id"] for r in synced.request_results] == ["ChIJ0001", "ChIJ0002", "ChIJ0003"]
    (request,) = synced.requests
    assert (request["status"], request["rows"], request["queries"]) == ("Success", 3, queries)


def test_given_a_listed_request_that_reads_pending_then_it_is_recorded_expired(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_finished_requests(), request_list("r1"))
    http.get(REQ.get_request("r1"), request_answer("r1", "Pending"))
    state: Json = {}

    synced = extract(requests_only(http, discover_requests=True), state)
    extract(requests_only(http, discover_requests=True), state)  # never read again

    assert [(r["id"], r["status"], r["source"]) for r in synced.requests] == [
        ("r1", "Expired", "listing")
    ]
    assert len(http.calls("/requests/r1")) == 1


# -- hints -------------------------------------------------------------------------------------


def test_resources_declare_keys_delete_insert_merge_and_replace_results_per_parent(
    http: HttpMocker,
) -> None:
    resources = source(http).resources

    hints = {name: resources[name].compute_table_schema() for name in resources}

    def keys(name: str, hint: str) -> list[str]:
        return [c["name"] for c in hints[name]["columns"].values() if c.get(hint)]

    assert keys("tasks", "primary_key") == ["id"]
    assert keys("task_results", "primary_key") == ["task_id", "file_index", "row_number"]
    assert keys("task_results", "merge_key") == ["task_id"]
    assert keys("request_results", "primary_key") == ["request_id", "query_index", "row_index"]
    assert keys("request_results", "merge_key") == ["request_id"]
    for name in resources:
        assert hints[name]["write_disposition"] == "merge"
        assert hints[name]["x-merge-strategy"] == "delete-insert"
    assert hints["task_results"].get("x-stage-data-deduplicated") is True
    assert hints["tasks"]["columns"]["created"]["data_type"] == "timestamp"


# -- transforms --------------------------------------------------------------------------------


def test_task_row_keeps_documented_fields_main_product_and_undocumented_ones() -> None:
    task = TaskBuilder(T1).with_file("/f").with_extra(title="bars").build("https://files")

    row = task_row(task)

    assert (row["product_name"], row["quantity"], row["service_name"]) == (
        "Google Maps Data",
        2,
        "google_maps_service_v2",
    )
    assert row["created"].isoformat() == "2025-01-01T00:00:00.000001+00:00"  # naive = UTC
    assert row["title"] == "bars"  # schema drift lands as a column
    assert (row["removed"], row["removed_at"]) == (False, None)


def test_results_fingerprint_ignores_the_signature_and_changes_with_a_restart() -> None:
    task = TaskBuilder(T1).with_file("/f").build("https://files")
    resigned = {**task, "results": [{**task["results"][0], "file_url": "https://files/f?sig=2"}]}
    restarted = {**task, "queue_task_id": "other"}

    assert results_fingerprint(task) == results_fingerprint(resigned)
    assert results_fingerprint(task) != results_fingerprint(restarted)
    assert results_fingerprint({**task, "status": "IN_PROGRESS"}) is None


def test_request_rows_number_nested_and_flat_data_and_count_queries() -> None:
    nested = [[{"a": 1}], [], ["plain"]]

    assert list(request_rows(nested)) == [
        {"query_index": 0, "row_index": 0, "a": 1},
        {"query_index": 2, "row_index": 0, "value": "plain"},
    ]
    assert list(request_rows([{"a": 1}])) == [{"query_index": 0, "row_index": 0, "a": 1}]
    assert (query_count(nested), query_count([{"a": 1}]), query_count(None)) == (3, 1, 1)


def test_webhook_signature_round_trip_and_api_task_tells_requests_from_tasks() -> None:
    body = b'{"id":"r1","status":"SUCCESS","api_task":true}'

    assert verify(body, signature(body, API_KEY), API_KEY)
    assert not verify(body, signature(body, "other"), API_KEY)
    assert parse(body) == {"kind": "request", "object_id": "r1", "status": "SUCCESS"}


# -- the endpoint table ------------------------------------------------------------------------


def test_every_endpoint_of_the_table_is_described_in_docs_outscraper_md() -> None:
    docs = DOCS.read_text()
    for row in ENDPOINTS:
        assert re.search(rf"`{row.name}` \| `{row.method} {re.escape(row.path)}`", docs), row.name
