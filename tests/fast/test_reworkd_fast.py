"""Reworkd in milliseconds: pagination, the watermark, error parsing, table hints, transforms.

The real source and resources run against in-process HTTP (`http` fixture) and are iterated
without a pipeline (`builders_reworkd.extract`): no sandbox server, no DuckDB.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from builders_reworkd import (
    GROUP,
    Json,
    OutputBuilder,
    Synced,
    at,
    extract,
    fastapi_error,
    legacy_state,
    outputs_page,
    outputs_request,
    validation_error,
)
from httpmock import HttpMocker

from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.reworkd import reworkd_source
from scrapesync.sources.reworkd.client import parse_error
from scrapesync.sources.reworkd.settings import ENDPOINTS


def sync(http: HttpMocker, state: Json | None = None, **options: Any) -> Synced:
    """One sync of group `GROUP` (unless `group_ids` says otherwise) against `http`."""
    config: dict[str, Any] = {"group_ids": [GROUP], **options}
    source = reworkd_source(api_key="rwk_test_key", base_url=http.base_url, **config)
    return extract(source, {} if state is None else state)


def record(number: int, **fields: object) -> OutputBuilder:
    """The CREATE of record `k<number>` as row `number` at `at(0)`, plus extra top-level fields."""
    return OutputBuilder(id=number, key_hash=f"k{number}").with_extra(**fields)


# -- pagination --------------------------------------------------------------------------------


def test_given_three_pages_then_every_page_is_read_following_next_cursor(
    http: HttpMocker,
) -> None:
    http.get(outputs_request(limit=2), outputs_page([record(1), record(2)], next_cursor=2))
    http.get(outputs_request(limit=2, cursor=2), outputs_page([record(3), record(4)], 4))
    http.get(outputs_request(limit=2, cursor=4), outputs_page([record(5)], next_cursor=None))

    synced = sync(http, page_size=2)

    assert synced.keys() == ["k1", "k2", "k3", "k4", "k5"]
    calls = http.calls(f"/v1/outputs/{GROUP}")
    assert len(calls) == 3
    assert all(call.headers["Authorization"] == "Bearer rwk_test_key" for call in calls)


def test_given_an_empty_page_with_a_cursor_then_the_read_stops_there(http: HttpMocker) -> None:
    http.get(outputs_request(), outputs_page([record(1)], next_cursor=1))
    http.get(outputs_request(cursor=1), outputs_page([], next_cursor=9))

    synced = sync(http)

    assert synced.keys() == ["k1"]
    assert len(http.calls(f"/v1/outputs/{GROUP}")) == 2  # cursor 9 is never followed


def test_given_a_cursor_handed_back_twice_then_the_sync_fails_instead_of_looping(
    http: HttpMocker,
) -> None:
    http.get(outputs_request(), outputs_page([record(1)], next_cursor=5))
    http.get(outputs_request(cursor=5), outputs_page([record(2)], next_cursor=5))

    with pytest.raises(ProviderAPIError, match="pagination loops: cursor 5 was returned twice"):
        sync(http)


def test_given_two_groups_then_each_is_read_with_its_own_paginator(http: HttpMocker) -> None:
    http.get(outputs_request("g-a"), outputs_page([record(1)], next_cursor=7))
    http.get(outputs_request("g-a", cursor=7), outputs_page([], next_cursor=None))
    # the same cursor value in another group is no loop: each group pages on its own
    http.get(outputs_request("g-b"), outputs_page([record(2)], next_cursor=7))
    http.get(outputs_request("g-b", cursor=7), outputs_page([], next_cursor=None))

    synced = sync(http, group_ids=["g-a", "g-b"])

    # groups are read concurrently: their pages arrive in any order
    assert sorted((row["group_id"], row["key_hash"]) for row in synced.rows("outputs")) == [
        ("g-a", "k1"),
        ("g-b", "k2"),
    ]
    marks = synced.rows("_scrapesync_partitions")
    assert sorted((m["resource"], m["partition"], m["watermark"]) for m in marks) == [
        ("outputs", "g-a", "2025-01-01T00:00:00Z"),
        ("outputs", "g-b", "2025-01-01T00:00:00Z"),
    ]


# -- the request: filters, page size and the watermark ------------------------------------------


def test_given_filters_then_they_are_sent_as_documented_and_unset_ones_are_not(
    http: HttpMocker,
) -> None:
    http.get(
        outputs_request(limit=50, job_id="job-1", country="United States", region="US-CA"),
        outputs_page([]),
    )

    sync(http, page_size=50, job_id="job-1", country="United States", region="US-CA", url=None)


def test_given_a_start_date_then_the_first_sync_sends_it_as_created_after(
    http: HttpMocker,
) -> None:
    http.get(outputs_request(created_after="2025-01-01T00:00:00Z"), outputs_page([]))

    sync(http, start_date="2025-01-01")


def test_given_an_older_release_state_then_the_group_continues_from_it_minus_lookback(
    http: HttpMocker,
) -> None:
    """Migration: a group with no `_scrapesync_partitions` row yet starts from the per-group dlt
    incremental an older release kept (resource `outputs_<group>`), not from scratch."""
    state = legacy_state({GROUP: "2025-01-01T05:30:00+00:00", "g-gone": "2025-01-01T00:00:00Z"})
    newest = record(2).changed("UPDATE", 2, at(40, hour=5))
    # 05:30 minus the default 900 s lookback, in the documented `...Z` form
    http.get(outputs_request(created_after="2025-01-01T05:15:00Z"), outputs_page([newest]))
    http.get(outputs_request("g-new"), outputs_page([]))

    synced = sync(http, state, group_ids=[GROUP, "g-new"])

    (mark,) = synced.rows("_scrapesync_partitions")
    assert (mark["partition"], mark["watermark"]) == (GROUP, "2025-01-01T05:40:00Z")
    assert mark["previous_watermark"] == "2025-01-01T05:30:00Z"


def test_given_no_lookback_then_the_request_starts_at_the_watermark_itself(
    http: HttpMocker,
) -> None:
    boundary = at(0, hour=1)
    loaded = record(1).changed("CREATE", 1, boundary)
    # the inclusive filter hands the loaded change back, with a new change in the same second
    again = outputs_page([loaded, loaded.changed("UPDATE", 2, boundary)])
    http.get(outputs_request(created_after="2025-01-01T01:00:00Z"), again)

    synced = sync(http, legacy_state({GROUP: "2025-01-01T01:00:00Z"}), lookback=0)

    # both come back; the merge keeps the later one (`_version` desc) and re-writing the
    # loaded one is idempotent; the watermark has not moved, so no watermark row is written
    rows = sorted(synced.rows("outputs"), key=lambda row: row["_version"])
    assert [(row["key_hash"], row["change_type"]) for row in rows] == [
        ("k1", "CREATE"),
        ("k1", "UPDATE"),
    ]
    assert synced.rows("_scrapesync_partitions") == []


# -- errors ------------------------------------------------------------------------------------


def test_given_a_wrong_token_then_the_error_quotes_reworkd_and_names_the_secret(
    http: HttpMocker,
) -> None:
    http.get(outputs_request(), fastapi_error(401, "Invalid token"))

    with pytest.raises(ProviderAPIError) as caught:
        sync(http)

    text = str(caught.value)
    assert text.startswith(f"reworkd: GET /v1/outputs/{GROUP} returned HTTP 401: Invalid token")
    assert "SOURCES__REWORKD__API_KEY" in text
    assert "rwk_test_key" not in text


def test_given_an_unknown_group_then_the_hint_names_the_group_and_the_setting(
    http: HttpMocker,
) -> None:
    http.get(outputs_request("g-nope"), fastapi_error(404, "Not Found"))

    with pytest.raises(ProviderAPIError) as caught:
        sync(http, group_ids=["g-nope"])

    assert caught.value.detail == "Not Found"
    assert "group 'g-nope' is unknown" in caught.value.hint
    assert "SOURCES__REWORKD__GROUP_IDS" in caught.value.hint


def test_given_a_validation_error_then_its_locations_and_messages_are_joined(
    http: HttpMocker,
) -> None:
    http.get(
        outputs_request(created_after="2025-01-01T00:00:00Z"),
        validation_error("created_after", "Invalid datetime", "2025-01-01T00:00:00Z"),
    )

    with pytest.raises(ProviderAPIError, match=r"HTTP 422: query\.created_after: Invalid datetime"):
        sync(http, start_date="2025-01-01")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": "Not authenticated"}, "Not authenticated"),
        (
            {"detail": [{"loc": ["query", "limit"], "msg": "too big"}, "junk"]},
            "query.limit: too big",
        ),
        ({"message": "not FastAPI"}, None),
        (["not", "an", "object"], None),
    ],
)
def test_given_an_error_body_then_parse_error_reads_fastapis_detail(
    body: object, expected: str | None
) -> None:
    assert parse_error(body) == expected


# -- table hints -------------------------------------------------------------------------------


def test_given_the_outputs_resource_then_its_hints_are_a_keyed_delete_insert_merge() -> None:
    source = reworkd_source(api_key="k", group_ids=[GROUP], base_url="http://unused")

    assert list(source.resources) == ["outputs"]  # one resource, however many groups
    schema = source.resources["outputs"].compute_table_schema()

    assert schema["name"] == "outputs"
    assert schema["write_disposition"] == "merge"
    assert schema.get("x-merge-strategy") == "delete-insert"
    keys = [name for name, column in schema["columns"].items() if column.get("primary_key")]
    assert keys == ["group_id", "key_hash"]


def test_given_a_page_then_each_table_carries_its_own_keys_and_delete_hints(
    http: HttpMocker,
) -> None:
    http.get(outputs_request(), outputs_page([record(1).with_files("f1")]))

    schemas = sync(http, history=True).schemas

    def columns_with(table: str, hint: str) -> list[str]:
        return [name for name, column in schemas[table]["columns"].items() if column.get(hint)]

    assert columns_with("outputs", "primary_key") == ["group_id", "key_hash"]
    assert columns_with("outputs", "hard_delete") == ["_deleted"]
    assert schemas["outputs"]["columns"]["_version"].get("dedup_sort") == "desc"
    assert columns_with("outputs__files", "primary_key") == [
        "group_id",
        "key_hash",
        "_version",
        "file_index",
    ]
    assert columns_with("outputs__files", "merge_key") == ["group_id", "key_hash"]
    assert columns_with("outputs__files", "hard_delete") == ["_deleted"]
    assert columns_with("outputs_history", "primary_key") == ["group_id", "key_hash", "_version"]
    assert not columns_with("outputs_history", "hard_delete")


# -- transforms --------------------------------------------------------------------------------


def test_given_a_record_with_files_then_outputs_are_flattened_and_files_are_child_rows(
    http: HttpMocker,
) -> None:
    item = record(1, brand_new={"nested": True}).with_data(seller={"name": "Ann"})
    http.get(outputs_request(), outputs_page([item.with_files("f1", "f2")]))

    synced = sync(http)

    (row,) = synced.rows("outputs")
    assert (row["group_id"], row["data__price"], row["data__seller__name"]) == (GROUP, 120.5, "Ann")
    assert row["tags__region"] == "US-CA"
    assert row["brand_new"] == '{"nested":true}'  # an undocumented field is kept, as JSON
    assert row["update_date"] == datetime(2025, 1, 1, tzinfo=UTC)  # naive times are UTC
    files = synced.rows("outputs__files")
    assert [(f["file_id"], f["file_index"], f["_deleted"]) for f in files] == [
        ("f1", 0, False),
        ("f2", 1, False),
    ]
    assert {f["_version"] for f in files} == {row["_version"]}


def test_given_a_delete_then_the_row_is_a_hard_delete_and_its_files_a_marker(
    http: HttpMocker,
) -> None:
    created = record(1).with_files("f1")
    deleted = created.changed("DELETE", 2, at(10))
    http.get(outputs_request(), outputs_page([created, record(3), deleted]))

    synced = sync(http)

    versions = [(row["key_hash"], row["change_type"], row["_deleted"]) for row in synced.rows()]
    assert versions == [("k1", "CREATE", False), ("k3", "CREATE", False), ("k1", "DELETE", True)]
    markers = [f for f in synced.rows("outputs__files") if f["_deleted"]]
    assert {(f["key_hash"], f["file_index"]) for f in markers} == {("k1", -1), ("k3", -1)}
    assert synced.metrics["deleted:outputs"] == 1


def test_given_two_changes_of_a_record_then_the_later_one_has_the_greater_version(
    http: HttpMocker,
) -> None:
    first = record(1).changed("CREATE", 10, at(5))
    # same second, higher row id: the id breaks the tie
    http.get(outputs_request(), outputs_page([first, first.changed("UPDATE", 11, at(5))]))

    rows = sync(http).rows()

    assert rows[0]["_version"] < rows[1]["_version"]
    assert rows[1]["_version"].endswith(":00000000000000000011")


def test_given_the_oldest_doc_shape_then_a_create_is_dated_by_its_create_date(
    http: HttpMocker,
) -> None:
    old = OutputBuilder(id=1, key_hash="k1", create_date=at(7), update_date=None)
    http.get(outputs_request(), outputs_page([old.without("update_date", "root_job_id")]))

    (row,) = sync(http).rows()

    assert row["update_date"] == datetime(2025, 1, 1, 0, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("item", "why"),
    [
        (OutputBuilder(1, "k1", change_type="UPDATE", update_date=None), "lacks update_date"),
        (OutputBuilder(1, "k1", change_type="MERGE"), "unknown change_type ['MERGE']"),
        (OutputBuilder(1, "k1").without("key_hash"), "lacks key_hash"),
        (OutputBuilder(1, "k1", create_date="yesterday"), "`create_date` is not an ISO 8601"),
    ],
    ids=["update-without-time", "unknown-change", "no-key", "bad-time"],
)
def test_given_an_output_that_breaks_the_docs_then_the_page_is_refused(
    http: HttpMocker, item: OutputBuilder, why: str
) -> None:
    http.get(outputs_request(), outputs_page([record(2), item]))

    with pytest.raises(ProviderAPIError) as caught:
        sync(http)

    assert str(caught.value).startswith(f"reworkd: GET /v1/outputs/{GROUP} returned HTTP 200")
    assert "malformed response" in caught.value.detail
    assert why in caught.value.detail


def test_given_history_then_every_change_is_a_version_open_until_set_after_load(
    http: HttpMocker,
) -> None:
    created = record(1)
    http.get(outputs_request(), outputs_page([created, created.changed("UPDATE", 2, at(9))]))

    history = sync(http, history=True).rows("outputs_history")

    assert [(row["change_type"], row["valid_from"], row["valid_to"]) for row in history] == [
        ("CREATE", datetime(2025, 1, 1, tzinfo=UTC), None),
        ("UPDATE", datetime(2025, 1, 1, 0, 9, tzinfo=UTC), None),
    ]
    assert "_deleted" not in history[0]


# -- options and the endpoint table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"page_size": 1001}, "page_size=1001 is outside 1..1000"),
        ({"page_size": 0}, "page_size=0 is outside 1..1000"),
        ({"lookback": -1}, "must be >= 0 seconds"),
        ({"group_ids": []}, "no scraping groups configured"),
        ({"group_ids": ["a", " a "]}, "repeats a group"),
        ({"concurrency": 0}, "concurrency=0 is outside 1..50"),
        ({"shard": "2/2"}, "`sources.reworkd.shard` = '2/2' is not a shard"),
    ],
)
def test_given_bad_options_then_the_source_refuses_them_before_any_request(
    http: HttpMocker, options: Json, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sync(http, **options)

    assert http.calls() == []


def test_given_the_endpoint_table_then_it_lists_the_documented_outputs_call() -> None:
    assert [(e.name, e.method, e.path, e.evidence) for e in ENDPOINTS] == [
        ("outputs", "GET", "/v1/outputs/{group_id}", "documented")
    ]


def test_given_a_shard_then_only_the_groups_it_owns_are_requested(http: HttpMocker) -> None:
    from scrapesync.sources.common.partitions import Shard

    groups = [f"g-{n}" for n in range(12)]
    mine = [group for group in groups if Shard(1, 3).owns(group)]
    for group in mine:
        http.get(outputs_request(group), outputs_page([]))

    sync(http, group_ids=groups, shard="1/3")  # a request to another group would fail

    assert 0 < len(mine) < len(groups)
    assert sorted(call.path for call in http.calls()) == sorted(f"/v1/outputs/{g}" for g in mine)


def test_given_small_pages_of_many_groups_then_each_row_and_file_keeps_its_group(
    http: HttpMocker,
) -> None:
    """Pages of small groups are transformed together; the same key in two groups stays two
    records, each with its own files."""
    groups = [f"g-{n}" for n in range(30)]
    for number, group in enumerate(groups):
        page = [record(1).with_files(f"f-{group}"), record(100 + number)]
        http.get(outputs_request(group), outputs_page(page))

    synced = sync(http, group_ids=groups)

    assert sorted((r["group_id"], r["key_hash"]) for r in synced.rows()) == sorted(
        [(g, "k1") for g in groups] + [(g, f"k{100 + n}") for n, g in enumerate(groups)]
    )
    files = [r for r in synced.rows("outputs__files") if r["file_index"] >= 0]
    assert sorted((f["group_id"], f["key_hash"], f["file_id"]) for f in files) == sorted(
        (g, "k1", f"f-{g}") for g in groups
    )
