"""open.cx in milliseconds: pagination, early stop, re-reads, deletes, errors, hints, transforms.

Every test drives the real source or client against in-process HTTP (`http`), with the pages
built by `builders_opencx`; no sandbox server, no DuckDB. The end-to-end behaviour (a real
pipeline, the destination) stays in tests/test_opencx.py; this module is named `_fast` because
pytest imports test modules by their base name, and `test_opencx` is taken by that one (and
imported by name from tests/test_opencx_pacing.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pendulum
import pytest
from builders_opencx import (
    CrawlJobBuilder,
    CrawlRequests,
    DatasourceBuilder,
    Json,
    at,
    extract,
    fastify_error,
    item,
    page,
    uuid_of,
)
from httpmock import HttpMocker

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.opencx import opencx_source
from scrapesync.sources.opencx.client import (
    cancel_crawl,
    make_client,
    set_datasource_status,
    start_crawl,
)
from scrapesync.sources.opencx.settings import ENDPOINTS
from scrapesync.sources.opencx.transform import (
    HistoryWalk,
    datasource_row,
    deleted_marker,
    job_row,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "opencx.md"
DS, DS2 = uuid_of(1), uuid_of(2)
REQ = CrawlRequests()


def source(http: HttpMocker, **options: Any) -> Any:
    return opencx_source(api_key="ocx_live_test", base_url=http.base_url, **options)


def client(http: HttpMocker) -> ProviderRESTClient:
    return make_client("ocx_live_test", http.base_url, 6000, 60)


def job(number: int, datasource: str = DS) -> CrawlJobBuilder:
    return CrawlJobBuilder(id=uuid_of(100 + number), datasource_id=datasource)


def state_after_first_sync(watermark: str, open_jobs: list[str] | None = None) -> Json:
    """The pipeline state a sync leaves: DS known, its job watermark, its unfinished jobs."""
    known = {DS: datasource_row(DatasourceBuilder(DS).build())}
    entry = {"watermark": watermark, "open": open_jobs or []}
    resources = {
        "datasources": {"known": known, "deleted": []},
        "crawl_jobs": {"datasources": {DS: entry}},
    }
    return {"sources": {"opencx": {"resources": resources}}}


# -- pagination --------------------------------------------------------------------------------


def test_given_cursor_pages_when_synced_then_every_page_is_read_and_the_cursor_sent_back(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_datasources(), page([DatasourceBuilder(DS)], "c1"))
    http.get(REQ.list_datasources(cursor="c1"), page([DatasourceBuilder(DS2)], None))
    http.get(REQ.list_crawl_jobs(DS), page([job(1)], "j1"))
    http.get(REQ.list_crawl_jobs(DS, cursor="j1"), page([job(2)], None))
    http.get(REQ.list_crawl_jobs(DS2), page([job(3, DS2)], None))

    synced = extract(source(http), {})

    assert [row["id"] for row in synced.datasources] == [DS, DS2]
    assert synced.job_ids() == [job(1).id, job(2).id, job(3).id]
    assert [call.qs for call in http.calls("/crawl")] == [{}, {"cursor": ["c1"]}]


def test_given_an_empty_page_with_a_cursor_then_the_list_ends_there(http: HttpMocker) -> None:
    http.get(REQ.list_datasources(), page([DatasourceBuilder(DS)], "c1"))
    http.get(REQ.list_datasources(cursor="c1"), page([], "c2"))  # "c2" is never followed
    http.get(REQ.list_crawl_jobs(DS), page([], None))

    synced = extract(source(http), {})

    assert [row["id"] for row in synced.datasources] == [DS]
    assert len(http.calls("/crawl")) == 2


def test_given_page_size_then_limit_is_sent_on_every_list_request(http: HttpMocker) -> None:
    http.get(REQ.list_datasources(limit=1), page([DatasourceBuilder(DS)], "c1"))
    http.get(REQ.list_datasources(cursor="c1", limit=1), page([], None))
    http.get(REQ.list_crawl_jobs(DS, limit=1), page([job(1)], None))

    synced = extract(source(http, page_size=1), {})

    assert synced.job_ids() == [job(1).id]


def test_given_a_list_without_page_stats_then_each_datasource_is_read_in_detail(
    http: HttpMocker,
) -> None:
    running = job(1).running()
    http.get(REQ.list_datasources(), page([DatasourceBuilder(DS).listed()], None))
    http.get(REQ.get_datasource(DS), item(DatasourceBuilder(DS).with_active_job(running)))
    http.get(REQ.list_crawl_jobs(DS), page([running], None))

    synced = extract(source(http), {})

    (row,) = synced.datasources
    assert (row["page_stats__total"], row["active_crawl_job__id"]) == (12, running.id)
    assert len(http.calls(f"/crawl/{DS}")) == 1


# -- incremental crawl jobs --------------------------------------------------------------------


def test_given_a_watermark_then_updated_after_is_watermark_minus_lookback_and_older_rows_drop(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_datasources(), page([DatasourceBuilder(DS)], None))
    history = [job(2).created(at(30)), job(1).created(at(0))]  # job 1 older than the cutoff
    http.get(REQ.list_crawl_jobs(DS, updated_after=at(10)), page(history, None))

    synced = extract(source(http, lookback=600), state_after_first_sync(at(20)))

    assert synced.job_ids() == [job(2).id]


def test_given_newest_first_pages_past_the_cutoff_then_the_history_read_stops_early(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_datasources(), page([DatasourceBuilder(DS)], None))
    first = [job(4).created(at(50)), job(3).created(at(40))]
    older = [job(2).created(at(5)), job(1).created(at(1))]
    http.get(REQ.list_crawl_jobs(DS, updated_after=at(20)), page(first, "j1"))
    # a server that ignores `updated_after` answers with older jobs: the walk stops after them
    http.get(REQ.list_crawl_jobs(DS, cursor="j1", updated_after=at(20)), page(older, "j2"))

    synced = extract(source(http, lookback=0), state_after_first_sync(at(20)))

    assert synced.job_ids() == [job(3).id, job(4).id]
    assert len(http.calls(f"/crawl/{DS}/crawls")) == 2  # the page behind "j2" is never read


def test_given_a_history_out_of_order_then_every_page_is_read(http: HttpMocker) -> None:
    http.get(REQ.list_datasources(), page([DatasourceBuilder(DS)], None))
    unordered = [job(1).created(at(1)), job(2).created(at(50))]
    http.get(REQ.list_crawl_jobs(DS, updated_after=at(20)), page(unordered, "j1"))
    http.get(
        REQ.list_crawl_jobs(DS, cursor="j1", updated_after=at(20)),
        page([job(3).created(at(40))], None),
    )

    synced = extract(source(http, lookback=0), state_after_first_sync(at(20)))

    assert synced.job_ids() == [job(2).id, job(3).id]


def test_given_a_job_running_at_the_last_sync_then_it_is_reread_and_leaves_the_open_list(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_datasources(), page([DatasourceBuilder(DS)], None))
    http.get(REQ.list_crawl_jobs(DS, updated_after=at(20)), page([], None))
    finished = job(1).created(at(5)).updated(at(15))  # filtered out by the server's updated_after
    http.get(REQ.get_crawl_job(DS, job(1).id), item(finished))
    state = state_after_first_sync(at(20), open_jobs=[job(1).id])

    synced = extract(source(http, lookback=0), state)

    assert [(row["id"], row["is_terminal"]) for row in synced.crawl_jobs] == [(job(1).id, True)]
    entry = state["sources"]["opencx"]["resources"]["crawl_jobs"]["datasources"][DS]
    assert (entry["open"], entry["watermark"]) == ([], at(20))


# -- deletes -----------------------------------------------------------------------------------


def test_given_a_known_datasource_gone_from_list_and_detail_then_it_is_marked_deleted(
    http: HttpMocker,
) -> None:
    http.get(REQ.list_datasources(), page([], None))
    http.get(REQ.get_datasource(DS), fastify_error(404, "Datasource not found"))
    state = state_after_first_sync(at(20))

    synced = extract(source(http), state)

    (marker,) = synced.datasources
    assert (marker["id"], marker["is_deleted"]) == (DS, True)
    assert marker["deleted_at"] is not None
    assert synced.crawl_jobs == []  # a deleted datasource's history is not read
    resources = state["sources"]["opencx"]["resources"]
    assert resources["datasources"]["deleted"] == [DS]
    assert DS not in resources["crawl_jobs"]["datasources"]


# -- errors ------------------------------------------------------------------------------------


def test_given_a_fastify_validation_error_then_message_code_and_hint_are_in_the_error(
    http: HttpMocker,
) -> None:
    body = fastify_error(400, "querystring/limit must be <= 100", "FST_ERR_VALIDATION")
    http.get(REQ.list_datasources(limit=500), body)

    with pytest.raises(ProviderAPIError) as caught:
        extract(source(http, page_size=500), {})

    text = str(caught.value)
    assert text.startswith(
        "opencx: GET /crawl returned HTTP 400: querystring/limit must be <= 100 "
        "(FST_ERR_VALIDATION)"
    )
    assert "`sources.opencx.page_size`" in caught.value.hint


def test_given_an_unknown_configured_datasource_then_the_404_names_it_and_the_setting(
    http: HttpMocker,
) -> None:
    http.get(REQ.get_datasource(DS2), fastify_error(404, "Datasource not found"))

    with pytest.raises(ProviderAPIError) as caught:
        extract(source(http, datasource_ids=[DS2]), {})

    assert caught.value.status == 404
    assert caught.value.hint.startswith(f"datasource '{DS2}' does not exist")
    assert "SOURCES__OPENCX__DATASOURCE_IDS" in caught.value.hint


def test_given_a_malformed_datasource_id_then_it_is_refused_before_any_request(
    http: HttpMocker,
) -> None:
    with pytest.raises(ValueError, match=r"'not-a-uuid' is not a UUID: fix `sources\.opencx"):
        source(http, datasource_ids=["not-a-uuid"])

    assert http.calls() == []


def test_given_a_read_only_key_when_starting_a_crawl_then_the_error_names_crawl_write(
    http: HttpMocker,
) -> None:
    http.post(REQ.start_crawl(DS), fastify_error(403, "Missing required scope: crawl:write"))

    with pytest.raises(ProviderAPIError) as caught:
        start_crawl(client(http), DS)

    assert str(caught.value).startswith(
        f"opencx: POST /crawl/{DS}/crawls returned HTTP 403: Missing required scope"
    )
    assert "lacks the `crawl:write` scope" in caught.value.hint


def test_given_a_crawl_already_running_when_starting_then_the_hint_names_the_cancel_command(
    http: HttpMocker,
) -> None:
    http.post(REQ.start_crawl(DS), fastify_error(409, "A crawl is already in progress"))
    running = job(7).running()
    http.get(REQ.get_datasource(DS), item(DatasourceBuilder(DS).with_active_job(running)))

    with pytest.raises(ProviderAPIError) as caught:
        start_crawl(client(http), DS)

    assert caught.value.status == 409
    assert caught.value.hint.endswith(f"scrapesync opencx cancel {DS} {running.id}")


def test_given_actions_then_they_send_the_documented_method_path_and_body(
    http: HttpMocker,
) -> None:
    http.expect("PATCH", REQ.update_datasource(DS, "paused"), item(DatasourceBuilder(DS)))
    http.post(REQ.cancel_crawl(DS, job(1).id), item(job(1).with_status("cancelled")))

    set_datasource_status(client(http), DS, "paused")
    cancelled = cancel_crawl(client(http), DS, job(1).id)

    assert cancelled["status"] == "cancelled"
    with pytest.raises(ValueError, match="'stopped' is not one of"):
        set_datasource_status(client(http), DS, "stopped")


# -- hints -------------------------------------------------------------------------------------


def test_resources_declare_key_delete_insert_merge_and_the_latest_read_wins(
    http: HttpMocker,
) -> None:
    resources = source(http).resources
    for name in ("datasources", "crawl_jobs"):
        schema = resources[name].compute_table_schema()
        columns = schema["columns"]
        assert schema["write_disposition"] == "merge", name
        assert schema.get("x-merge-strategy") == "delete-insert", name
        assert [c for c, hint in columns.items() if hint.get("primary_key")] == ["id"], name
        assert columns["is_deleted"]["data_type"] == "bool", name
    jobs = resources["crawl_jobs"].compute_table_schema()["columns"]
    assert jobs["updated_at"].get("dedup_sort") == "desc"
    assert jobs["duration_s"]["data_type"] == "double"


# -- transforms --------------------------------------------------------------------------------


def test_datasource_row_flattens_stats_and_active_job_and_keeps_undocumented_fields() -> None:
    running = job(1).running()
    detail = DatasourceBuilder(DS).with_active_job(running).with_extra(region="eu").build()

    row = datasource_row(detail)

    assert (row["page_stats__synced"], row["active_crawl_job__status"]) == (9, "scraping")
    assert (row["region"], row["is_deleted"], row["deleted_at"]) == ("eu", False, None)
    assert "page_stats" not in row
    assert "active_crawl_job" not in row
    marker = deleted_marker(row, pendulum.datetime(2025, 3, 2))
    assert (marker["active_crawl_job__id"], marker["is_deleted"]) == (None, True)
    assert marker["deleted_at"] == "2025-03-02T00:00:00+00:00"


def test_job_row_derives_duration_only_once_the_job_ended() -> None:
    done = job(1).created(at(0)).with_extra(completed_at=at(90))
    ended, running = job_row(done.build()), job_row(job(2).running().build())

    assert (ended["duration_s"], ended["is_terminal"]) == (5400.0, True)
    assert (running["duration_s"], running["is_terminal"]) == (None, False)


def test_history_walk_needs_a_decrease_to_prove_order_and_one_job_proves_nothing() -> None:
    cutoff = pendulum.parse(at(30))
    one = HistoryWalk(cutoff)  # type: ignore[arg-type]
    assert not one.exhausted_after([job(1).created(at(0)).build()])
    walk = HistoryWalk(cutoff)  # type: ignore[arg-type]
    assert not walk.exhausted_after([job(3).created(at(40)).build()])
    assert walk.exhausted_after([job(2).created(at(10)).build()])


# -- the docs page matches the code ------------------------------------------------------------


def test_every_endpoint_of_the_table_is_described_in_docs_opencx_md() -> None:
    text = DOCS.read_text()
    for endpoint in ENDPOINTS:
        path = endpoint.path.replace("{datasource_id}", "{id}").replace("{job_id}", "{jobId}")
        line = rf"^\| `{endpoint.name}` \| `{endpoint.method} {re.escape(path)}` \|.*$"
        row = re.search(line, text, re.M)
        assert row, f"docs/opencx.md lacks {endpoint.name}: {endpoint.method} {path}"
        evidence = row.group(0).rstrip(" |").rsplit("|", 1)[1].strip()
        assert evidence.startswith("documented") == endpoint.documented, endpoint.name
