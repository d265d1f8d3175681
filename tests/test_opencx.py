"""open.cx end to end: real sandbox over HTTP, real dlt pipelines, real DuckDB file."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from scrapesync.sandbox import FaultRule
from scrapesync.sandbox.opencx import TERMINAL

JOB_COLUMNS = (
    "id, datasource_id, status, total_pages, completed_pages, new_pages, updated_pages, "
    "removed_pages, unchanged_pages, error_message"
)
FAST = {"rate_limit": 1000}  # the pacing tests below use the real-looking small limits


@pytest.fixture
def ocx(harness: Any) -> Any:
    return harness("opencx", **FAST)


def job_rows(ocx: Any, where: str = "true") -> set[tuple[Any, ...]]:
    rows = ocx.query(f"SELECT {JOB_COLUMNS} FROM opencx.crawl_jobs WHERE {where}")
    assert len(rows) == len(set(rows)), "duplicate crawl_jobs rows"
    return set(rows)


def expected_jobs(ocx: Any) -> set[tuple[Any, ...]]:
    names = [name.strip() for name in JOB_COLUMNS.split(",")]
    return {tuple(job[name] for name in names) for job in ocx.api.truth()["jobs"].values()}


def assert_equals_truth(ocx: Any) -> None:
    """Tables hold exactly the sandbox's datasources (live ones current) and every job."""
    truth = ocx.api.truth()
    live = {
        (ds_id, ds["status"], ds["updated_at"][:19], ds["page_stats"]["total"], False)
        for ds_id, ds in truth["datasources"].items()
    }
    rows = ocx.query(
        "SELECT id, status, strftime(updated_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S'), "
        "page_stats__total, is_deleted FROM opencx.datasources WHERE NOT is_deleted"
    )
    assert set(rows) == live
    deleted = {row[0] for row in ocx.query("SELECT id FROM opencx.datasources WHERE is_deleted")}
    assert deleted == truth["deleted"]
    assert job_rows(ocx) == expected_jobs(ocx)
    assert ocx.scalar("SELECT count(*) FROM opencx.crawl_jobs") == len(truth["jobs"])


def test_given_datasources_when_first_sync_then_every_datasource_and_job_lands_typed(
    ocx: Any,
) -> None:
    report = ocx.sync()

    assert_equals_truth(ocx)
    assert {t.table: t.inserted for t in report.tables} == ocx.api.expected_rows()
    columns = dict(
        ocx.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'opencx' AND table_name = 'crawl_jobs'"
        )
    )
    assert columns["updated_at"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["total_pages"] == "BIGINT"
    assert columns["duration_s"] == "DOUBLE"
    # the derived duration is end - start, and only for jobs that ended
    for job_id, started, completed, duration in ocx.query(
        "SELECT id, started_at, completed_at, duration_s FROM opencx.crawl_jobs"
    ):
        job = ocx.api.truth()["jobs"][job_id]
        if job["completed_at"] and job["started_at"]:
            assert duration == (completed - started).total_seconds()
        else:
            assert duration is None
    # page_stats flattened; path lists stay JSON values, not child tables
    ds_id, ds = next(iter(ocx.api.truth()["datasources"].items()))
    stats = ocx.query(
        "SELECT page_stats__total, page_stats__synced, page_stats__pending, page_stats__error, "
        f"page_stats__excluded, exclude_paths FROM opencx.datasources WHERE id = '{ds_id}'"
    )[0]
    assert list(stats[:5]) == [
        ds["page_stats"][k] for k in ("total", "synced", "pending", "error", "excluded")
    ]
    assert orjson.loads(stats[5]) == ds["exclude_paths"]
    tables = {row[0] for row in ocx.query("SELECT table_name FROM information_schema.tables")}
    assert not any(name.startswith("datasources__") for name in tables)


@pytest.mark.parametrize("server_filter", ["updated_at", "created_at", None])
def test_given_running_crawl_when_it_completes_by_next_sync_then_counters_are_final(
    harness: Any, server_filter: str | None
) -> None:
    """Also when the server's `updated_after` filters on creation or is ignored."""
    ocx = harness("opencx", updated_after_field=server_filter, **FAST)
    running = next(j for j in ocx.api.truth()["jobs"].values() if j["status"] == "scraping")
    ocx.sync(lookback=0)
    first = ocx.query(
        f"SELECT status, completed_pages FROM opencx.crawl_jobs WHERE id = '{running['id']}'"
    )
    assert first == [("scraping", running["completed_pages"])]
    while running["status"] not in TERMINAL:
        ocx.sandbox.advance()
    ocx.sandbox.requests.clear()

    ocx.sync(lookback=0)

    final = ocx.query(
        f"SELECT status, total_pages, completed_pages, new_pages, updated_pages, removed_pages, "
        f"unchanged_pages, completed_at IS NOT NULL, duration_s > 0 FROM opencx.crawl_jobs "
        f"WHERE id = '{running['id']}'"
    )
    assert final == [
        (
            running["status"],
            running["total_pages"],
            running["completed_pages"],
            running["new_pages"],
            running["updated_pages"],
            running["removed_pages"],
            running["unchanged_pages"],
            True,
            True,
        )
    ]
    assert_equals_truth(ocx)
    direct = ocx.requests(f"/crawls/{running['id']}$")
    # a server that hides the job from the filtered history: the re-read of open jobs finds it
    assert bool(direct) == (server_filter == "created_at")


def test_given_changes_when_synced_again_then_only_new_or_changed_jobs_are_read(
    ocx: Any,
) -> None:
    ocx.sync(lookback=0)
    watermarks = dict(
        ocx.query("SELECT datasource_id, max(updated_at) FROM opencx.crawl_jobs GROUP BY 1")
    )
    before = dict(ocx.query("SELECT id, _dlt_load_id FROM opencx.crawl_jobs"))
    ocx.sandbox.advance(3)
    ocx.sandbox.requests.clear()

    ocx.sync(lookback=0)

    assert_equals_truth(ocx)
    for ds_id, newest in watermarks.items():
        (history,) = ocx.requests(f"^/crawl/{ds_id}/crawls$")
        assert history.query["updated_after"] == [newest.strftime("%Y-%m-%dT%H:%M:%SZ")]
    after = dict(ocx.query("SELECT id, _dlt_load_id FROM opencx.crawl_jobs"))
    rewritten = {job_id for job_id, load in after.items() if before.get(job_id) != load}
    changed = {
        job["id"]
        for job in ocx.api.truth()["jobs"].values()
        if job["datasource_id"] not in watermarks
        or job["updated_at"] >= watermarks[job["datasource_id"]].strftime("%Y-%m-%dT%H:%M:%SZ")
    }
    assert rewritten == changed
    assert len(rewritten) < len(after) / 2
    assert not ocx.requests("/crawls/[^/]+$")  # nothing needed a direct re-read


@pytest.mark.parametrize("newest_first", [True, False])
def test_given_a_server_ignoring_the_filter_then_history_stops_early_only_when_order_is_proven(
    harness: Any, newest_first: bool
) -> None:
    ocx = harness(
        "opencx",
        jobs_per_datasource=8,
        updated_after_field=None,
        newest_first=newest_first,
        **FAST,
    )
    ocx.sync(page_size=2)
    first = Counter(r.path for r in ocx.requests("/crawls$"))
    ocx.sandbox.advance()
    ocx.sandbox.requests.clear()

    ocx.sync(page_size=2)

    second = Counter(r.path for r in ocx.requests("/crawls$"))
    assert_equals_truth(ocx)
    if newest_first:
        assert sum(second.values()) <= len(second) * 2 < sum(first.values())
    else:  # no proof of order: the whole history is read again, nothing is missed
        assert sum(second.values()) >= sum(first.values())


def test_given_evolving_data_when_synced_repeatedly_then_destination_equals_provider(
    ocx: Any,
) -> None:
    ocx.sync()
    for _ in range(3):
        ocx.sandbox.advance(3)
        ocx.sync()
        assert_equals_truth(ocx)


def test_given_a_deleted_datasource_then_its_row_and_jobs_are_marked_deleted(ocx: Any) -> None:
    ocx.sync()
    victim = sorted(ocx.api.datasources)[0]
    url = ocx.api.datasources[victim]["url"]
    ocx.api.delete_datasource(victim)
    ocx.sandbox.requests.clear()

    report = ocx.sync()

    assert_equals_truth(ocx)
    row = ocx.query(
        "SELECT url, is_deleted, deleted_at IS NOT NULL FROM opencx.datasources "
        f"WHERE id = '{victim}'"
    )
    assert row == [(url, True, True)]  # the last known values stay, flagged
    flags = ocx.query(
        f"SELECT DISTINCT is_deleted FROM opencx.crawl_jobs WHERE datasource_id = '{victim}'"
    )
    assert flags == [(True,)]
    assert ocx.scalar("SELECT count(*) FROM opencx.crawl_jobs WHERE is_deleted") == len(
        ocx.api.graveyard[victim]["jobs"]
    )
    assert {t.table: t.deleted for t in report.tables}["datasources"] == 1
    # its gone-ness was confirmed by a direct read, and it is not checked again
    assert [r.status for r in ocx.requests(f"^/crawl/{victim}$")] == [404]
    ocx.sandbox.requests.clear()
    ocx.sync()
    assert not ocx.requests(victim)


def test_given_an_incomplete_or_inconsistent_list_then_nothing_is_marked_deleted(
    harness: Any,
) -> None:
    ocx = harness("opencx", datasources=5, list_page_size=2, **FAST)
    ocx.sync()
    # a list read that fails half way: the sync fails, no datasource is marked
    ocx.sandbox.faults.add(FaultRule("opencx", path="^/crawl$", status=500, times=None, skip=1))
    assert not ocx.sync(expect_ok=False).ok
    assert ocx.scalar("SELECT count(*) FROM opencx.datasources WHERE is_deleted") == 0
    # a list that (wrongly) leaves one out: the direct read finds it alive
    ocx.sandbox.faults.clear()
    page = {
        "items": [ocx.api.datasources[i] for i in sorted(ocx.api.datasources)[1:]],
        "next": None,
    }
    ocx.sandbox.faults.add(
        FaultRule("opencx", path="^/crawl$", status=200, body=orjson.dumps(page).decode())
    )

    ocx.sync()

    assert ocx.scalar("SELECT count(*) FROM opencx.datasources WHERE is_deleted") == 0
    assert_equals_truth(ocx)


def test_given_datasource_ids_then_only_those_are_synced_and_bad_ids_fail_clearly(
    ocx: Any,
) -> None:
    chosen = sorted(ocx.api.datasources)[:2]

    ocx.sync(datasource_ids=chosen)

    assert {r[0] for r in ocx.query("SELECT id FROM opencx.datasources")} == set(chosen)
    assert {r[0] for r in ocx.query("SELECT DISTINCT datasource_id FROM opencx.crawl_jobs")} == set(
        chosen
    )
    assert not ocx.requests("^/crawl$")  # no list read needed
    ocx.sandbox.requests.clear()
    malformed = ocx.sync(expect_ok=False, datasource_ids=["not-a-uuid"]).error
    assert "'not-a-uuid' is not a UUID" in malformed
    assert "SOURCES__OPENCX__DATASOURCE_IDS" in malformed
    assert not ocx.requests()  # refused before any request
    unknown = "00000000-0000-4000-8000-000000000000"
    error = ocx.sync(expect_ok=False, datasource_ids=[unknown]).error
    assert "404" in error
    assert unknown in error
    assert "sources.opencx.datasource_ids" in error


def test_given_wrong_or_unscoped_key_then_clear_error_and_loaded_data_intact(
    harness: Any,
) -> None:
    ocx = harness(
        "opencx", api_keys={"ocx_live_good": ("crawl:read",), "ocx_live_other": ()}, **FAST
    )
    ocx.sync()
    before = ocx.query("SELECT * FROM opencx.crawl_jobs ORDER BY id")
    ocx.sandbox.advance(2)

    wrong = ocx.sync(expect_ok=False, api_key="ocx_live_wrong_secret").error
    unscoped = ocx.sync(expect_ok=False, api_key="ocx_live_other").error

    assert "opencx: GET /crawl returned HTTP 401" in wrong
    assert "SOURCES__OPENCX__API_KEY" in wrong
    assert "ocx_live_wrong_secret" not in wrong
    assert "403" in unscoped
    assert "crawl:read" in unscoped
    assert ocx.query("SELECT * FROM opencx.crawl_jobs ORDER BY id") == before
    ocx.sync()
    assert_equals_truth(ocx)


@pytest.mark.parametrize(
    "fault",
    [
        FaultRule("opencx", kind="status", status=429, headers={"Retry-After": "1"}, times=2),
        FaultRule("opencx", path="/crawls", kind="status", status=503, times=2),
        FaultRule("opencx", path="^/crawl$", kind="drop", times=1),
    ],
    ids=["429-retry-after", "503-on-history", "drop-on-list"],
)
def test_given_transient_faults_then_sync_survives_with_correct_data(
    ocx: Any, fault: FaultRule
) -> None:
    ocx.sandbox.faults.add(fault)

    ocx.sync()

    assert_equals_truth(ocx)
    assert [r for r in ocx.requests() if r.fault], "the fault was never injected"


def test_given_interrupted_run_then_next_sync_finishes_it_and_syncs_new_data(ocx: Any) -> None:
    from scrapesync.pipelines import registry
    from scrapesync.pipelines.runner import pipeline_for

    ocx.sync()
    ocx.sandbox.advance(2)
    pipeline = pipeline_for("opencx")
    pipeline.extract(registry.get("opencx").source(**ocx.options()))
    ocx.sandbox.advance(2)

    report = ocx.sync()

    assert report.recovered_packages == 1
    assert_equals_truth(ocx)


def test_sandbox_rejects_what_the_real_api_rejects(harness: Any) -> None:
    """The sandbox is only useful if it is as strict as the documented API."""
    from dlt.sources.helpers.requests import Client

    from scrapesync.sandbox.opencx import DEFAULT_KEY, READ_ONLY_KEY

    ocx = harness("opencx", rate_limit=3, rate_window=60.0)
    http = Client(raise_for_status=False, request_max_attempts=1).session
    root = ocx.sandbox.url("opencx")
    ds_id = next(ds for ds in sorted(ocx.api.datasources) if not ocx.api.active[ds])
    read = {"Authorization": f"Bearer {READ_ONLY_KEY}"}
    write = {"Authorization": f"Bearer {DEFAULT_KEY}"}

    unauthorized = http.get(f"{root}/crawl")
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": "Unauthorized",
    }
    bad_id = http.get(f"{root}/crawl/123/crawls", headers=read).json()
    assert bad_id["code"] == "FST_ERR_VALIDATION"
    assert bad_id["message"] == 'params/id must match format "uuid"'
    assert http.get(f"{root}/crawl?limit=101", headers=read).status_code == 400
    assert http.post(f"{root}/crawl/{ds_id}/crawls", headers=read).status_code == 403
    throttled = http.get(f"{root}/crawl", headers=read)  # the 4th call of this key in a minute
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["error"] == "Too Many Requests"
    # the limit is per key: the other key still gets through
    started = http.post(f"{root}/crawl/{ds_id}/crawls", headers=write)
    assert started.status_code == 201
    assert http.post(f"{root}/crawl/{ds_id}/crawls", headers=write).status_code == 409
    cancelled = http.delete(f"{root}/crawl/{ds_id}/crawls/{started.json()['id']}", headers=write)
    assert cancelled.json()["status"] == "cancelled"


def test_given_a_configured_datasource_deleted_then_marked_once_and_later_syncs_still_run(
    ocx: Any,
) -> None:
    chosen = sorted(ocx.api.datasources)[:2]
    ocx.sync(datasource_ids=chosen)
    ocx.api.delete_datasource(chosen[0])

    ocx.sync(datasource_ids=chosen)
    ocx.sandbox.advance()
    ocx.sync(datasource_ids=chosen)  # the deleted id stays configured: a warning, not a failure

    rows = ocx.query("SELECT id, is_deleted FROM opencx.datasources ORDER BY id")
    assert rows == sorted([(chosen[0], True), (chosen[1], False)])
