"""The dlt behaviours scrapesync relies on (docs/dlt-behaviours.md), checked on the installed dlt.

Each test states one behaviour of dlt itself, not of scrapesync, so that a dlt upgrade that
changes it fails here, by name, before it fails somewhere deep in a sync. No network: HTTP is
answered in-process (`httpmock`), and the pipelines load into a DuckDB file in the test's
temporary directory. The section of docs/dlt-behaviours.md each test backs is in its docstring.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dlt
import pendulum
import pyarrow as pa
import pytest
from dlt.common.schema.typing import TColumnSchema
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from httpmock import HttpMocker, HttpRequest, HttpResponse
from requests import Response

Row = dict[str, Any]


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """dlt's anonymous telemetry would try the network from a background thread."""
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@pytest.fixture
def pipeline(tmp_path: Path) -> dlt.Pipeline:
    """A fresh pipeline into a DuckDB file of its own."""
    return make_pipeline(tmp_path)


def make_pipeline(tmp_path: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="behaviours",
        destination=dlt.destinations.duckdb(str(tmp_path / "behaviours.duckdb")),
        dataset_name="data",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


def rows(pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]


def incremental_state(pipeline: dlt.Pipeline, resource: str, cursor: str) -> dict[str, Any]:
    """The incremental's stored state: sources.<source>.resources.<resource>.incremental."""
    for source in pipeline.state.get("sources", {}).values():
        found = source.get("resources", {}).get(resource, {}).get("incremental", {}).get(cursor)
        if found is not None:
            return dict(found)
    raise AssertionError(f"no incremental state for {resource}.{cursor}")


# ---------------------------------------------------------------- RESTClient and paginators


def cursor_client(http: HttpMocker) -> RESTClient:
    return RESTClient(
        base_url=http.base_url,
        paginator=JSONResponseCursorPaginator(cursor_path="next", cursor_param="cursor"),
        data_selector="data",
    )


def test_given_an_empty_page_with_a_cursor_then_the_cursor_paginator_reads_on(
    http: HttpMocker,
) -> None:
    """RESTClient and paginators: only a null (or empty) cursor ends the read."""
    http.get(HttpRequest("/items", query={}), HttpResponse(json={"data": [1], "next": "a"}))
    http.get(HttpRequest("/items", query={"cursor": "a"}), HttpResponse(json={"data": []}))

    pages = list(cursor_client(http).paginate("/items"))

    assert pages == [[1], []]


def test_given_a_missing_or_empty_cursor_then_the_cursor_paginator_stops(
    http: HttpMocker,
) -> None:
    """RESTClient and paginators: a null, missing or empty cursor ends the read."""
    http.get(HttpRequest("/items", query={}), HttpResponse(json={"data": [1], "next": ""}))

    pages = list(cursor_client(http).paginate("/items"))

    assert pages == [[1]]


def response_with(body: bytes) -> Response:
    response = Response()
    response.status_code = 200
    response._content = body
    return response


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"data": [{"id": 1}, {"id": 2}]}', [{"id": 1}, {"id": 2}]),
        (b'{"data": {"id": 1}}', [{"id": 1}]),
        (b'{"data": null}', []),
    ],
)
def test_given_a_data_selector_then_a_list_is_unwrapped_and_a_dict_or_null_wrapped(
    body: bytes, expected: list[Row]
) -> None:
    """RESTClient and paginators: what `data_selector` makes of a list, an object and null."""
    client = RESTClient(base_url="http://unused")

    assert client.extract_response(response_with(body), "data") == expected


def test_given_a_cursor_page_then_the_restclient_decodes_the_body_twice(
    http: HttpMocker,
) -> None:
    """RESTClient and paginators: the page and the paginator each call `response.json()`,
    which is why scrapesync's client decodes once and caches (sources/common/client.py)."""
    http.get(HttpRequest("/items", query={}), HttpResponse(json={"data": [1], "next": None}))
    decodes: list[int] = []

    def count_decodes(response: Response, *args: Any, **kwargs: Any) -> None:
        decode = response.json

        def json(**options: Any) -> Any:
            decodes.append(1)
            return decode(**options)

        response.json = json  # type: ignore[method-assign]

    list(cursor_client(http).paginate("/items", hooks={"response": [count_decodes]}))

    assert len(decodes) == 2


# ---------------------------------------------------------------- retries and Retry-After


def retrying_session(max_delay: float = 300) -> Any:
    client = Client(
        request_max_attempts=3,
        request_backoff_factor=0.01,
        request_max_retry_delay=max_delay,
        raise_for_status=False,
    )
    return client.session


def timed_get(http: HttpMocker, session: Any) -> tuple[int, float]:
    started = time.monotonic()
    status = session.get(f"{http.base_url}/items").status_code
    return status, time.monotonic() - started


def test_given_a_429_with_retry_after_then_dlt_waits_as_asked(http: HttpMocker) -> None:
    """Retries and Retry-After: a 429's `Retry-After` (seconds) sets the wait."""
    http.get(
        HttpRequest("/items"),
        [HttpResponse(status=429, headers={"Retry-After": "1"}), HttpResponse(json=[])],
    )

    status, seconds = timed_get(http, retrying_session())

    assert status == 200
    assert seconds >= 0.9  # the backoff alone would have waited 0.01 s


def test_given_a_retry_after_beyond_the_cap_then_dlt_waits_the_cap_silently(
    http: HttpMocker,
) -> None:
    """Retries and Retry-After: a longer `Retry-After` is cut to `request_max_retry_delay`
    without a word, which is why scrapesync fails fast instead (sources/common/client.py)."""
    http.get(
        HttpRequest("/items"),
        [HttpResponse(status=429, headers={"Retry-After": "86400"}), HttpResponse(json=[])],
    )

    status, seconds = timed_get(http, retrying_session(max_delay=0.2))

    assert status == 200
    assert seconds < 5


def test_given_a_retry_after_of_zero_then_dlt_falls_back_to_the_backoff(
    http: HttpMocker,
) -> None:
    """Retries and Retry-After: `Retry-After: 0` is ignored; the exponential backoff applies."""
    http.get(
        HttpRequest("/items"),
        [HttpResponse(status=503, headers={"Retry-After": "0"}), HttpResponse(json=[])],
    )

    status, _ = timed_get(http, retrying_session())

    assert status == 200
    assert len(http.calls("/items")) == 2


def test_given_a_404_then_dlt_does_not_retry(http: HttpMocker) -> None:
    """Retries and Retry-After: 4xx other than 429 is final."""
    http.get(HttpRequest("/items"), HttpResponse(status=404))

    status, _ = timed_get(http, retrying_session())

    assert status == 404
    assert len(http.calls("/items")) == 1


# ---------------------------------------------------------------- incremental cursors


def events(batch: list[Row], **incremental: Any) -> Any:
    """A resource over `batch` with an incremental on `ts`."""

    @dlt.resource(name="events", primary_key="id", write_disposition="append")
    def resource(
        ts: dlt.sources.incremental[Any] = dlt.sources.incremental("ts", **incremental),
    ) -> Iterator[list[Row]]:
        yield batch

    return resource()


def test_given_a_rerun_at_the_boundary_then_only_new_rows_load(pipeline: dlt.Pipeline) -> None:
    """Incremental cursors: with `range_start="closed"` rows at the watermark are read again
    and dlt drops those whose key it already saw there (`unique_hashes`)."""
    pipeline.run(events([{"id": 1, "ts": 1}, {"id": 2, "ts": 3}]))
    pipeline.run(events([{"id": 2, "ts": 3}, {"id": 3, "ts": 3}, {"id": 4, "ts": 4}]))

    assert rows(pipeline, "SELECT id FROM events ORDER BY id") == [(1,), (2,), (3,), (4,)]


def test_given_an_open_range_start_then_a_late_row_at_the_boundary_is_lost(
    pipeline: dlt.Pipeline,
) -> None:
    """Incremental cursors: `range_start="open"` drops every row at the watermark, new or not."""
    pipeline.run(events([{"id": 1, "ts": 3}], range_start="open"))
    pipeline.run(events([{"id": 2, "ts": 3}], range_start="open"))

    assert rows(pipeline, "SELECT id FROM events") == [(1,)]


def test_given_a_lag_then_the_next_run_starts_that_far_before_the_watermark(
    pipeline: dlt.Pipeline,
) -> None:
    """Incremental cursors: `lag` (seconds on a datetime cursor) moves `start_value` back;
    the stored watermark stays the newest value seen and no boundary hashes are kept."""
    newest = pendulum.datetime(2025, 1, 1, 12, 0, 20)
    starts: list[Any] = []

    @dlt.resource(name="changes", primary_key="id", write_disposition="merge")
    def changes(
        ts: dlt.sources.incremental[pendulum.DateTime] = dlt.sources.incremental(
            "ts", initial_value=pendulum.datetime(2025, 1, 1), lag=10
        ),
    ) -> Iterator[list[Row]]:
        starts.append(ts.start_value)
        yield [{"id": i, "ts": newest.subtract(seconds=20 - 10 * i)} for i in range(3)]

    pipeline.run(changes())
    pipeline.run(changes())

    assert starts[1] == newest.subtract(seconds=10)
    state = incremental_state(pipeline, "changes", "ts")
    assert pendulum.instance(state["last_value"]) == newest
    assert not state.get("unique_hashes")


def test_given_an_end_value_then_the_range_is_half_open_and_nothing_is_stored(
    pipeline: dlt.Pipeline,
) -> None:
    """Incremental cursors: `end_value` makes a stateless backfill of [initial, end)."""
    batch = [{"id": ts, "ts": ts} for ts in range(10, 15)]

    pipeline.extract(events(batch, initial_value=11, end_value=13))

    assert "sources" not in pipeline.state
    pipeline.normalize()
    pipeline.load()
    assert rows(pipeline, "SELECT ts FROM events ORDER BY ts") == [(11,), (12,)]


@pytest.mark.parametrize(("policy", "loaded"), [("include", [(1,), (2,)]), ("exclude", [(1,)])])
def test_given_a_row_without_cursor_then_the_policy_decides(
    pipeline: dlt.Pipeline, policy: str, loaded: list[tuple[int]]
) -> None:
    """Incremental cursors: `on_cursor_value_missing` includes or excludes such rows."""
    pipeline.run(events([{"id": 1, "ts": 1}, {"id": 2}], on_cursor_value_missing=policy))

    assert rows(pipeline, "SELECT id FROM events ORDER BY id") == loaded


def test_given_a_row_without_cursor_then_by_default_extract_fails(
    pipeline: dlt.Pipeline,
) -> None:
    """Incremental cursors: the default, `raise`, fails the extract step."""
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(events([{"id": 1, "ts": 1}, {"id": 2}]))

    assert failed.value.step == "extract"


# ---------------------------------------------------------------- merge strategies


def items(batch: list[Row]) -> Any:
    return dlt.resource(
        batch,
        name="items",
        primary_key="key",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        columns={
            "_deleted": {"data_type": "bool", "hard_delete": True},
            "seq": {"data_type": "bigint", "dedup_sort": "desc"},
        },
    )


def test_given_a_change_feed_then_delete_insert_keeps_the_latest_and_applies_deletes(
    pipeline: dlt.Pipeline,
) -> None:
    """Merge strategies: `dedup_sort` picks the latest change of a key within one load;
    `hard_delete` removes a key, and a delete of a key never loaded inserts nothing."""
    live = False
    pipeline.run(items([{"key": k, "seq": 1, "_deleted": live} for k in "abc"]))
    pipeline.run(
        items(
            [
                {"key": "a", "seq": 4, "_deleted": False},
                {"key": "a", "seq": 6, "_deleted": False},
                {"key": "a", "seq": 5, "_deleted": False},
                {"key": "b", "seq": 7, "_deleted": True},
                {"key": "z", "seq": 8, "_deleted": True},
            ]
        )
    )

    assert rows(pipeline, "SELECT key, seq FROM items ORDER BY key") == [("a", 6), ("c", 1)]


def test_given_scd2_then_a_hard_delete_flag_does_not_retire_the_record(
    pipeline: dlt.Pipeline,
) -> None:
    """Merge strategies: scd2 versions by load, and its SQL ignores `hard_delete`, which is why
    scrapesync builds its own history table instead."""

    def versions(batch: list[Row]) -> Any:
        return dlt.resource(
            batch,
            name="versions",
            primary_key="key",
            merge_key="key",
            write_disposition={"disposition": "merge", "strategy": "scd2"},
            columns={"deleted": {"data_type": "bool", "hard_delete": True}},
        )

    pipeline.run(versions([{"key": "a", "v": 1, "deleted": False}]))
    pipeline.run(versions([{"key": "a", "v": 2, "deleted": True}]))

    active = "SELECT v, deleted FROM versions WHERE _dlt_valid_to IS NULL"
    assert rows(pipeline, active) == [(2, True)]


# ---------------------------------------------------------------- column hints


def test_given_one_hint_dict_shared_by_two_columns_then_dlt_merges_them(
    pipeline: dlt.Pipeline,
) -> None:
    """Column hints: dlt writes each column's name into its hint dict, in place."""
    shared: TColumnSchema = {"data_type": "text", "nullable": False}
    resource = dlt.resource(
        [{"a": "x", "b": "y"}], name="hinted", columns={"a": shared, "b": shared}
    )

    pipeline.extract(resource)

    assert shared["name"] == "b"
    assert list(pipeline.default_schema.get_table_columns("hinted")) == ["b"]


# ---------------------------------------------------------------- state


def test_given_a_loaded_run_then_its_state_is_restored_from_the_destination(
    tmp_path: Path,
) -> None:
    """Pipeline state: the state is a row of `_dlt_pipeline_state` in the same load; a runner
    without its working dir gets it back from the destination."""
    first = make_pipeline(tmp_path)
    first.run(events([{"id": 1, "ts": 5}]))
    stored = rows(first, "SELECT pipeline_name FROM _dlt_pipeline_state")
    shutil.rmtree(tmp_path / "pipelines")

    again = make_pipeline(tmp_path)
    again.sync_destination()

    assert stored == [("behaviours",)]
    assert incremental_state(again, "events", "ts")["last_value"] == 5


# ---------------------------------------------------------------- load packages and recovery


def test_given_a_pending_package_then_run_loads_it_and_extracts_nothing_new(
    pipeline: dlt.Pipeline,
) -> None:
    """Load packages and recovery: new data passed to `run` while a package is pending is not
    extracted (scrapesync's runner finishes the package first, then extracts)."""
    pipeline.run(events([{"id": 0, "ts": 0}]))
    pipeline.extract(events([{"id": 1, "ts": 1}]))

    pipeline.run(events([{"id": 2, "ts": 2}]))

    assert rows(pipeline, "SELECT id FROM events ORDER BY id") == [(0,), (1,)]


def test_given_a_first_run_killed_before_its_load_then_the_next_sync_starts_over(
    pipeline: dlt.Pipeline,
) -> None:
    """Load packages and recovery: while the dataset does not exist at the destination,
    restoring from it wipes the working dir, pending package and local state included."""
    pipeline.extract(events([{"id": 1, "ts": 1}]))

    pipeline.sync_destination()

    assert not pipeline.has_pending_data
    assert "sources" not in pipeline.state


def test_given_aborted_packages_then_the_local_state_rolls_back(pipeline: dlt.Pipeline) -> None:
    """Load packages and recovery: `abort_packages` deletes pending packages and restores the
    state from before them, so their rows are read again."""
    pipeline.run(events([{"id": 1, "ts": 1}]))
    pipeline.extract(events([{"id": 2, "ts": 2}]))
    assert incremental_state(pipeline, "events", "ts")["last_value"] == 2

    pipeline.abort_packages()

    assert incremental_state(pipeline, "events", "ts")["last_value"] == 1
    assert not pipeline.has_pending_data


# ---------------------------------------------------------------- Arrow, Parquet, evolution


def test_given_a_value_of_another_type_then_it_lands_in_a_variant_column(
    pipeline: dlt.Pipeline,
) -> None:
    """Arrow, Parquet and schema evolution: a value that does not fit goes to `<col>__v_<type>`."""
    pipeline.run([{"id": 1, "size": 10}], table_name="things")
    pipeline.run([{"id": 2, "size": "large"}], table_name="things")

    assert "size__v_text" in pipeline.default_schema.get_table_columns("things")
    sql = "SELECT id, size, size__v_text FROM things ORDER BY id"
    assert rows(pipeline, sql) == [(1, 10, None), (2, None, "large")]


def test_given_an_arrow_table_then_normalize_adds_no_dlt_columns(pipeline: dlt.Pipeline) -> None:
    """Arrow, Parquet and schema evolution: Arrow pages are moved, not normalised: no `_dlt_id`
    and no child tables (lists stay one column)."""
    table = pa.table({"id": [1, 2], "tags": [["x"], ["y", "z"]]})

    pipeline.run(table, table_name="pages", loader_file_format="parquet")

    columns = pipeline.default_schema.get_table_columns("pages")
    assert "_dlt_id" not in columns
    assert "pages__tags" not in pipeline.default_schema.tables


def test_given_arrow_nullability_unlike_the_hints_then_dlt_warns_and_keeps_the_hints(
    pipeline: dlt.Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """Arrow, Parquet and schema evolution: the warning `pipelines/cli.py` filters out."""
    table = pa.table({"id": pa.array([1, 2], pa.int64())})  # Arrow infers nullable
    resource = dlt.resource(table, name="keyed", columns={"id": {"nullable": False}})

    pipeline.extract(resource)

    assert "when merging arrow schema with dlt schema" in caplog.text
    assert pipeline.default_schema.get_table_columns("keyed")["id"]["nullable"] is False


# ---------------------------------------------------------------- version pins


def test_given_the_pinned_versions_then_the_dataset_api_reads_tables(
    pipeline: dlt.Pipeline,
) -> None:
    """Version pins: dlt 1.31.0, duckdb below 2, sqlglot 30.21.0 (later releases break the
    dataset API's `qualify()` call)."""
    pipeline.run([{"id": 1}], table_name="pinned")

    assert version("dlt") == "1.31.0"
    assert int(version("duckdb").split(".")[0]) < 2
    assert version("sqlglot") == "30.21.0"
    assert pipeline.dataset().pinned.fetchall() != []
