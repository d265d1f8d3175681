"""Outscraper end to end: real sandbox over HTTP, real dlt pipelines, real DuckDB file."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import duckdb
import pytest

from scrapesync.sandbox import FaultRule
from scrapesync.sandbox.outscraper import DEFAULT_KEY, UNAUTHORIZED
from scrapesync.sources.common import statedb
from scrapesync.sources.outscraper.cli import run_action


@pytest.fixture
def os_(harness: Any) -> Any:
    return harness("outscraper")


def task_result_counts(h: Any) -> dict[str, int]:
    return dict(h.query("SELECT task_id, count(*) FROM outscraper.task_results GROUP BY 1"))


def assert_tasks_equal_truth(h: Any) -> None:
    truth = h.api.truth()
    rows = dict(h.query("SELECT id, status FROM outscraper.tasks WHERE NOT removed"))
    assert rows == truth["tasks"]
    assert task_result_counts(h) == truth["task_rows"] | {
        task_id: count
        for task_id, count in task_result_counts(h).items()
        if task_id in truth["removed"]
    }
    keys = h.query("SELECT task_id, file_index, row_number FROM outscraper.task_results")
    assert len(keys) == len(set(keys)), "duplicate rows in task_results"


def test_given_an_account_when_first_sync_then_tasks_files_and_requests_land_typed(
    os_: Any,
) -> None:
    report = os_.sync()

    assert_tasks_equal_truth(os_)
    # every format: flat JSON, nested JSON, CSV, CSV served as octet-stream without extension
    formats = {os_.api.tasks[t].fmt for t in os_.api.truth()["task_rows"]}
    assert formats == {"json", "json-nested", "csv", "csv-octet"}
    columns = dict(
        os_.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'outscraper' AND table_name = 'task_results'"
        )
    )
    # JSON and CSV files meet in the same, typed columns (no variants)
    assert columns["rating"] == "DOUBLE"
    assert columns["reviews"] == "BIGINT"
    assert columns["working_hours__monday"] == "VARCHAR"
    assert not [name for name in columns if name.endswith("__v_text")]
    csv_name = os_.scalar(
        "SELECT name FROM outscraper.task_results r JOIN outscraper.tasks t ON t.id = r.task_id "
        "WHERE r.row_number = 0 ORDER BY t.id LIMIT 1"
    )
    assert csv_name.startswith('Place "')  # quotes inside a CSV cell survive
    assert os_.scalar("SELECT count(DISTINCT product_name) FROM outscraper.task_results") == 1
    done = [r for r in os_.api.requests.values() if r.status == "Success"]
    assert os_.scalar("SELECT count(*) FROM outscraper.request_results") == sum(
        len(r.queries) * r.rows_per_query for r in done
    )
    assert os_.query("SELECT DISTINCT query_index FROM outscraper.request_results ORDER BY 1") == [
        (0,),
        (1,),
    ]
    assert {t.table: t.inserted for t in report.tables}["task_results"] == 160
    auth = list(os_.requests("^/tasks$"))
    assert auth
    assert auth[0].query["pageSize"] == ["100"]


def test_given_keyset_pages_then_every_page_follows_last_id(os_: Any) -> None:
    os_.sync(page_size=2)

    pages = os_.requests("^/tasks$")
    ids = sorted(os_.api.tasks, reverse=True)
    assert [p.query.get("lastId") for p in pages] == [None, [ids[1]], [ids[3]]]
    assert_tasks_equal_truth(os_)


def test_given_a_task_finishing_between_syncs_then_only_its_file_is_downloaded(os_: Any) -> None:
    os_.sync()
    running = next(t for t in os_.api.tasks.values() if t.status == "IN_PROGRESS")
    os_.api.finish_task(running.id)
    os_.sandbox.requests.clear()

    os_.sync()

    assert_tasks_equal_truth(os_)
    files = os_.requests("^/files/")
    assert [f.path.split("/")[2] for f in files] == [running.id]
    assert os_.scalar(f"SELECT status FROM outscraper.tasks WHERE id = '{running.id}'") == "SUCCESS"


def test_given_a_restarted_task_when_it_finishes_again_then_its_rows_are_replaced(os_: Any) -> None:
    os_.sync()
    task_id = next(iter(os_.api.truth()["task_rows"]))
    old_queue = os_.scalar(f"SELECT queue_task_id FROM outscraper.tasks WHERE id = '{task_id}'")

    print_line = run_action("restart", task_id, DEFAULT_KEY, os_.sandbox.url("outscraper"))
    os_.sync()  # running again: old rows stay until the new results exist
    assert os_.scalar(f"SELECT status FROM outscraper.tasks WHERE id = '{task_id}'") == "PENDING"
    assert task_result_counts(os_)[task_id] == 40
    os_.api.finish_task(task_id, rows=25)
    os_.sync()

    assert "restarted" in print_line
    assert task_result_counts(os_)[task_id] == 25  # no leftovers of the first run
    new_queue = os_.scalar(f"SELECT queue_task_id FROM outscraper.tasks WHERE id = '{task_id}'")
    assert new_queue != old_queue
    assert_tasks_equal_truth(os_)


def test_given_a_terminated_task_then_it_is_marked_removed_not_kept_silently(os_: Any) -> None:
    os_.sync()
    task_id = next(iter(os_.api.truth()["task_rows"]))

    assert "terminated" in run_action(
        "terminate", task_id, DEFAULT_KEY, os_.sandbox.url("outscraper")
    )
    os_.sync()

    removed, removed_at = os_.query(
        f"SELECT removed, removed_at FROM outscraper.tasks WHERE id = '{task_id}'"
    )[0]
    assert removed is True
    assert removed_at is not None
    assert os_.scalar("SELECT count(*) FROM outscraper.removed_tasks") == 1
    reads = [r for r in os_.requests(f"^/tasks/{task_id}$") if r.method == "GET"]
    assert reads[0].status == 404  # confirmed by a direct read before marking
    assert_tasks_equal_truth(os_)


def test_given_an_incomplete_listing_then_nothing_is_marked_removed(os_: Any) -> None:
    os_.sync(page_size=2)
    os_.sandbox.faults.add(FaultRule("outscraper", path="^/tasks$", status=500, times=None, skip=1))

    report = os_.sync(expect_ok=False, page_size=2)

    assert "500" in report.error
    assert os_.scalar("SELECT count(*) FROM outscraper.tasks WHERE removed") == 0
    os_.sandbox.faults.clear()
    os_.sync(page_size=2)
    assert os_.scalar("SELECT count(*) FROM outscraper.tasks WHERE removed") == 0


def test_given_a_tag_filter_then_a_task_outside_it_is_confirmed_not_removed(os_: Any) -> None:
    os_.sync()
    os_.sync(task_query="batch-1")

    assert os_.scalar("SELECT count(*) FROM outscraper.tasks WHERE removed") == 0
    assert os_.requests("^/tasks/")  # the tasks outside the filter were read one by one


def test_given_a_finished_sync_then_its_file_opens_read_only_in_the_same_process(
    os_: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a second sync reads the finished requests from the destination (a state-store
    # connection); a loaded machine's idle closer may not have run when the sync returns
    monkeypatch.setattr(statedb._DUCKDB, "idle", 3600.0)
    os_.sync()
    os_.sync()

    with duckdb.connect(str(os_.db_path), read_only=True) as db:  # "different configuration"
        assert db.sql("SELECT count(*) FROM outscraper.requests").fetchone() != (0,)


def test_given_a_request_read_after_its_retention_then_it_is_recorded_expired(
    os_: Any, caplog: pytest.LogCaptureFixture
) -> None:
    os_.sync()
    pending = next(r for r in os_.api.requests.values() if r.status == "Pending")
    os_.api.finish_request(pending.id)
    os_.api.clock += timedelta(hours=5)  # nobody synced for 5 hours: the results are gone
    os_.sandbox.requests.clear()

    with caplog.at_level(logging.WARNING):
        os_.sync()

    status = os_.scalar(f"SELECT status FROM outscraper.requests WHERE id = '{pending.id}'")
    assert status == "Expired"
    assert any(pending.id in r.message and "Expired" in r.message for r in caplog.records)
    collected = os_.scalar(
        f"SELECT count(*) FROM outscraper.request_results WHERE request_id = '{pending.id}'"
    )
    assert collected == 0
    os_.sandbox.requests.clear()
    os_.sync()
    assert not os_.requests(f"^/requests/{pending.id}$")  # never waited on again


def test_given_a_request_that_never_finishes_then_it_is_given_up(os_: Any) -> None:
    ghost = "00000000-0000-4000-8000-000000000000"
    os_.sync(request_ids=[ghost], max_pending_hours=1)
    assert os_.scalar(f"SELECT status FROM outscraper.requests WHERE id = '{ghost}'") == "Pending"

    os_.sync(request_ids=[ghost], max_pending_hours=0)

    assert os_.scalar(f"SELECT status FROM outscraper.requests WHERE id = '{ghost}'") == "Expired"


def test_given_an_error_in_a_200_body_then_the_sync_fails_with_the_providers_message(
    os_: Any,
) -> None:
    os_.sync()
    before = os_.query("SELECT * FROM outscraper.tasks ORDER BY id")
    os_.api.error_in_200 = "Your balance is negative, please add credits"

    report = os_.sync(expect_ok=False)

    assert "outscraper: GET /tasks returned HTTP 200" in report.error
    assert "Your balance is negative, please add credits" in report.error
    assert os_.query("SELECT * FROM outscraper.tasks ORDER BY id") == before


def test_given_an_invalid_page_size_answered_200_then_it_is_an_error(os_: Any) -> None:
    os_.api.tasks.clear()
    from scrapesync.sources.outscraper.client import KeysetPaginator, OutscraperClient

    client = OutscraperClient(DEFAULT_KEY, os_.sandbox.url("outscraper"))
    with pytest.raises(Exception, match="pageSize must be between 1 and 100"):
        list(client.pages("/tasks", {"pageSize": 500}, KeysetPaginator(), "tasks"))
    assert "page_size=500" in os_.sync(expect_ok=False, page_size=500).error


def test_given_a_wrong_key_then_clear_error_without_the_secret(os_: Any) -> None:
    report = os_.sync(expect_ok=False, api_key="os_live_secret_123")

    assert "401" in report.error
    assert "SOURCES__OUTSCRAPER__API_KEY" in report.error
    assert "os_live_secret_123" not in report.error
    with pytest.raises(Exception, match="401"):
        run_action("terminate", "20211211132758c8e9", "nope", os_.sandbox.url("outscraper"))


def test_given_a_broken_file_download_then_nothing_is_lost_and_next_sync_loads_it(
    os_: Any,
) -> None:
    os_.sandbox.faults.add(FaultRule("outscraper", path="^/files/", kind="truncate", times=1))

    report = os_.sync(expect_ok=False)

    assert "outscraper" in report.error
    os_.sync()
    assert_tasks_equal_truth(os_)


def test_given_evolving_account_when_synced_repeatedly_then_destination_equals_provider(
    os_: Any,
) -> None:
    os_.sync()
    for _ in range(3):
        os_.sandbox.advance()
        os_.sync()
        assert_tasks_equal_truth(os_)
    assert os_.scalar("SELECT count(*) FROM outscraper.requests WHERE status = 'Expired'") == 0


def test_sandbox_rejects_what_the_real_api_rejects(os_: Any) -> None:
    from dlt.sources.helpers.requests import Client

    http = Client(raise_for_status=False, request_max_attempts=1).session
    url = os_.sandbox.url("outscraper")
    answer = http.get(f"{url}/tasks")
    assert answer.status_code == 401
    assert answer.json() == {"error": True, "errorMessage": UNAUTHORIZED}
    key = {"X-API-KEY": DEFAULT_KEY}
    assert http.get(f"{url}/tasks/nope", headers=key).status_code == 404
    assert "errorMessage" in http.get(f"{url}/tasks", headers=key, params={"pageSize": 0}).json()
    request_id = next(iter(os_.api.requests))
    assert http.get(f"{url}/requests/{request_id}").status_code == 200  # no key needed
    task = next(t for t in os_.api.tasks.values() if t.status == "SUCCESS")
    assert http.get(f"{url}/files/{task.id}/{task.version}?sig=bad").status_code == 403
