"""Scrapewise end to end: real sandbox over HTTP, real dlt pipelines, real DuckDB file."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from scrapesync.sandbox import FaultRule

HISTORY = "/api/scraper/load-history$"
ERRORS = "/errors$"
DATA = "/api/scraper/data/group/"


@pytest.fixture
def sw(harness: Any) -> Any:
    return harness("scrapewise", runs_per_scraper=4)


def assert_equals_truth(sw: Any) -> None:
    """Every table holds exactly what the sandbox says, once."""
    truth = sw.api.truth()
    jobs = sw.query(
        "SELECT id, state, finished, success_links, error_links, is_deleted FROM scrapewise.jobs"
    )
    assert len(jobs) == len({row[0] for row in jobs}), "duplicate runs"
    by_id = {row[0]: row for row in jobs}
    for run_id, dto in truth["jobs"].items():
        _, state, finished, success, errors, deleted = by_id[run_id]
        assert (state, success, errors, deleted) == (
            dto["state"],
            dto["successLinks"],
            dto["errorLinks"],
            False,
        ), run_id
        assert (finished is None) == (dto["finished"] is None), run_id
    for run_id in truth["deleted_jobs"]:
        assert by_id[run_id][5] is True, f"soft-deleted run {run_id} not kept and marked"
    links = sw.query("SELECT job_id, url FROM scrapewise.job_errors")
    assert len(links) == len(set(links))
    assert set(links) == truth["job_errors"]
    rows = sw.query("SELECT job_id, _id FROM scrapewise.rows")
    assert len(rows) == len(set(rows)), "duplicate rows"
    assert set(rows) == truth["rows"]


def newly_terminal(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    terminal = ("COMPLETED", "FAILED", "STOPPED")
    return {
        run_id
        for run_id, dto in after.items()
        if dto["state"] in terminal and before.get(run_id, {}).get("state") not in terminal
    }


def test_given_an_account_when_first_sync_then_every_table_lands_typed(sw: Any) -> None:
    report = sw.sync()

    assert_equals_truth(sw)
    totals = {t.table: t.total for t in report.tables}
    assert {table: totals[table] for table in sw.api.expected_rows()} == sw.api.expected_rows()
    columns = dict(
        sw.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'scrapewise' AND table_name = 'rows'"
        )
    )
    # the scraper's own fields, typed; run id, group id and scrape time as columns
    assert columns["price"] == "DOUBLE"
    assert columns["in_stock"] == "BOOLEAN"
    assert columns["reviews"] == "BIGINT"
    assert columns["scraped_at"] == "TIMESTAMP WITH TIME ZONE"
    assert {"job_id", "group_id", "scraper_id", "row_index"} <= set(columns)
    first = sw.requests(HISTORY)[0]
    assert first.query["sort"] == ["started,desc"]
    assert first.query["withDeleted"] == ["false"]
    assert sw.scalar("SELECT count(*) FROM scrapewise.scrapers WHERE config_type = 'SIMPLE'") == 4


def test_given_running_job_when_synced_again_then_state_is_final(sw: Any) -> None:
    sw.sync()
    running = [r for r, dto in sw.api.truth()["jobs"].items() if dto["state"] == "RUNNING"]
    assert running
    # rows written while the run was still RUNNING were not loaded
    partial = sw.scalar(f"SELECT count(*) FROM scrapewise.rows WHERE job_id IN ({_ids(running)})")
    assert partial == 0

    sw.sandbox.advance()
    sw.sync()

    assert_equals_truth(sw)
    states = dict(sw.query(f"SELECT id, state FROM scrapewise.jobs WHERE id IN ({_ids(running)})"))
    assert all(state in ("COMPLETED", "FAILED", "STOPPED") for state in states.values())
    assert (
        sw.scalar(
            f"SELECT count(*) FROM scrapewise.jobs WHERE id IN ({_ids(running)}) "
            "AND finished IS NULL"
        )
        == 0
    )


def test_given_new_runs_when_synced_then_only_new_work_is_requested(harness: Any) -> None:
    sw = harness("scrapewise", runs_per_scraper=30)
    sw.sync(page_size=10)
    before = sw.api.truth()["jobs"]
    sw.sandbox.advance()
    after = sw.api.truth()["jobs"]
    sw.sandbox.requests.clear()

    sw.sync(page_size=10)

    assert_equals_truth(sw)
    # newest first, stopped at the watermark: one page, not the 13 of the first sync
    assert len(sw.requests(HISTORY)) == 1
    ended = newly_terminal(before, after)
    with_errors = {r for r in ended if after[r]["errorLinks"] > 0}
    asked = {r.path.split("/job/")[1].split("/")[0] for r in sw.requests(ERRORS)}
    assert asked == with_errors
    read_runs = {
        r.query["filters"][0].split('"')[3] for r in sw.requests(DATA) if "filters" in r.query
    }
    assert read_runs == {r for r in ended if after[r]["itemsQuantity"] > 0}


def test_given_no_change_when_synced_again_then_errors_and_rows_are_not_fetched_again(
    sw: Any,
) -> None:
    sw.sync()
    sw.sandbox.requests.clear()

    sw.sync()

    assert sw.requests(ERRORS) == []
    assert [r for r in sw.requests(DATA) if "filters" in r.query] == []
    assert len(sw.requests(HISTORY)) == 1
    assert_equals_truth(sw)


def test_given_evolving_account_when_synced_repeatedly_then_destination_equals_provider(
    sw: Any,
) -> None:
    sw.sync(page_size=7)
    for _ in range(3):
        sw.sandbox.advance()
        sw.sync(page_size=7)
        assert_equals_truth(sw)
    assert {t: n for t, n in sw.api.expected_rows().items() if t != "enriched_rows"} == {
        t: sw.scalar(f"SELECT count(*) FROM scrapewise.{t}")
        for t in ("jobs", "job_errors", "rows", "scrapers")
    }


def test_given_an_open_run_soft_deleted_then_it_is_kept_and_marked(sw: Any) -> None:
    sw.sync()
    pending = next(r for r, dto in sw.api.truth()["jobs"].items() if dto["state"] == "PENDING")
    sw.api.data.soft_delete(pending)

    sw.sync()

    assert sw.scalar(f"SELECT is_deleted FROM scrapewise.jobs WHERE id = '{pending}'") is True
    assert_equals_truth(sw)


def test_given_a_finished_run_soft_deleted_below_the_watermark_then_it_is_marked(sw: Any) -> None:
    sw.sync()
    done = [r for r, dto in sw.api.truth()["jobs"].items() if dto["state"] == "COMPLETED"]
    old = min(done, key=lambda r: sw.api.data.runs[r].started)
    sw.api.data.soft_delete(old)
    sw.sandbox.requests.clear()

    sw.sync()

    # totalElements no longer adds up: the scope is read again in full
    assert len(sw.requests(HISTORY)) == 2
    assert sw.scalar(f"SELECT is_deleted FROM scrapewise.jobs WHERE id = '{old}'") is True
    assert sw.scalar("SELECT count(*) FROM scrapewise.jobs WHERE is_deleted") == 1
    assert_equals_truth(sw)


def test_given_with_deleted_then_soft_deleted_runs_come_flagged_by_the_api(sw: Any) -> None:
    run_id = next(iter(sw.api.truth()["jobs"]))
    sw.api.data.soft_delete(run_id)

    sw.sync(with_deleted=True)

    assert sw.requests(HISTORY)[0].query["withDeleted"] == ["true"]
    assert sw.scalar(f"SELECT is_deleted FROM scrapewise.jobs WHERE id = '{run_id}'") is True


def test_given_a_late_run_below_the_watermark_then_the_count_check_loads_it(sw: Any) -> None:
    sw.sync()
    data = sw.api.data
    scraper = next(iter(data.scrapers.values()))
    late = data.start_run(scraper, at=data.clock - timedelta(hours=5))
    data._begin(late)
    data._finish(late, "COMPLETED")

    sw.sync()

    assert sw.scalar(f"SELECT state FROM scrapewise.jobs WHERE id = '{late.id}'") == "COMPLETED"
    assert_equals_truth(sw)


def test_given_groups_and_scrapers_configured_then_only_their_runs_are_synced(sw: Any) -> None:
    groups = list(sw.api.data.groups)
    sw.sync(group_ids=[groups[0]])

    synced = {row[0] for row in sw.query("SELECT DISTINCT group_id FROM scrapewise.jobs")}
    assert synced == {groups[0]}
    assert sw.requests(HISTORY)[0].query["filters"] == [f'{{"groupId":"{groups[0]}"}}']
    assert {r[0] for r in sw.query("SELECT DISTINCT group_id FROM scrapewise.rows")} == synced


def _ids(ids: list[str]) -> str:
    return ", ".join(f"'{run_id}'" for run_id in ids)


@pytest.mark.parametrize(
    "fault",
    [
        FaultRule("scrapewise", kind="status", status=503, times=2),
        FaultRule("scrapewise", path=ERRORS, kind="status", status=500, times=3),
        FaultRule("scrapewise", path=DATA, kind="drop", times=2),
        FaultRule("scrapewise", kind="status", status=429, headers={"Retry-After": "0"}, times=2),
    ],
    ids=["503", "500-on-errors", "drop-on-rows", "429"],
)
def test_given_transient_faults_then_sync_survives_with_correct_data(
    sw: Any, fault: FaultRule
) -> None:
    sw.sandbox.faults.add(fault)

    report = sw.sync(concurrency=4)

    assert_equals_truth(sw)
    assert [r for r in sw.requests() if r.fault], "the fault was never injected"
    assert report.stats.retries >= 1 or fault.kind == "drop"


def test_given_the_rate_limit_then_throttled_requests_are_retried(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a burst of 4, refilled at 10/s: the first sync's ~40 requests must be throttled; two
    # threads compete for the tokens, so one request can meet several 429s in a row on a busy
    # machine: allow the attempts a real rate-limited account would need
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "12")
    sw = harness("scrapewise", runs_per_scraper=6, rate_limit=(10.0, 4))

    report = sw.sync(concurrency=2)

    assert report.stats.throttled >= 1
    assert any(r.status == 429 for r in sw.requests())
    assert_equals_truth(sw)
