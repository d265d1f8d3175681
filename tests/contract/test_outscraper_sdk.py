"""Contract: Outscraper's official Python SDK (`outscraper` 6.0.5, dev extra) against the sandbox.

Every call a real client makes to the routes the sandbox serves must parse, with the content
the API documents (docs/outscraper.md). The SDK is pointed at the sandbox by its host list
(`outscraper.transport.API_URLS`, which it tries in order). SDK 6.0.5 has public methods for
the task list, the request list and request results; for `GET/PUT/DELETE /tasks/{id}` and the
`flat` parameter it has none, so those go through `OutscraperClient._request`, the one call
every public SDK method makes (same hosts, same `X-API-KEY` and `client` headers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.outscraper import DEFAULT_KEY, UNAUTHORIZED, OutscraperAPI

outscraper = pytest.importorskip("outscraper")
transport = pytest.importorskip("outscraper.transport")

Json = dict[str, Any]


@pytest.fixture
def account(make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch) -> OutscraperAPI:
    """A sandbox with 5 tasks (3 finished) and 3 requests (2 finished); the SDK points at it."""
    sandbox = make_sandbox(outscraper={"tasks": 5, "requests": 3})
    monkeypatch.setattr(transport, "API_URLS", [sandbox.url("outscraper")])
    api = sandbox.providers["outscraper"]
    assert isinstance(api, OutscraperAPI)
    return api


def sdk(key: str = DEFAULT_KEY) -> Any:
    return outscraper.OutscraperClient(api_key=key)


def call(method: str, path: str, **kwargs: Any) -> Any:
    """One raw SDK call (routes without a public SDK method); returns the requests Response."""
    return sdk()._request(method, path, use_handle_response=False, **kwargs)


def finished_request(api: OutscraperAPI) -> str:
    return next(r.id for r in api.requests.values() if r.status == "Success")


# -- tasks -------------------------------------------------------------------------------------


def test_get_tasks_pages_by_last_id_until_has_more_is_false(account: OutscraperAPI) -> None:
    client, seen, last_id = sdk(), [], ""
    while True:
        tasks, has_more = client.get_tasks(last_id=last_id, page_size=2)
        seen += [task["id"] for task in tasks]
        if not has_more:
            break
        last_id = tasks[-1]["id"]

    assert seen == sorted(account.tasks, reverse=True)  # newest first, each once
    first = client.get_tasks(page_size=1)[0][0]
    assert set(first) >= {"id", "user_id", "status", "created", "updated", "metadata", "results"}


def test_get_tasks_filters_by_tag(account: OutscraperAPI) -> None:
    tasks, has_more = sdk().get_tasks(query="batch-1", page_size=100)

    assert {task["id"] for task in tasks} == {
        task.id for task in account.tasks.values() if "batch-1" in task.tags
    }
    assert has_more is False


def test_get_tasks_reports_an_error_in_a_200_body(account: OutscraperAPI) -> None:
    with pytest.raises(Exception, match="Error: pageSize must be between 1 and 100"):
        sdk().get_tasks(page_size=500)
    account.error_in_200 = "Your balance is negative"
    with pytest.raises(Exception, match="Error: Your balance is negative"):
        sdk().get_tasks()


def test_get_task_returns_the_documented_task_with_its_file_url(account: OutscraperAPI) -> None:
    done = next(t for t in account.tasks.values() if t.status == "SUCCESS")

    answer = call("GET", f"/tasks/{done.id}")

    task = answer.json()
    assert answer.status_code == 200
    assert (task["id"], task["status"], task["queue_task_id"]) == (
        done.id,
        "SUCCESS",
        done.queue_task_id,
    )
    main, domains = task["results"]
    assert (main["product_name"], main["quantity"]) == ("Google Maps Data", done.rows)
    assert main["file_url"].startswith("http")
    assert "file_url" not in domains


def test_restart_then_terminate_answer_as_documented_and_the_task_is_gone(
    account: OutscraperAPI,
) -> None:
    done = next(t for t in account.tasks.values() if t.status == "SUCCESS")
    queue_before = done.queue_task_id

    restarted = call("PUT", f"/tasks/{done.id}")
    after_restart = call("GET", f"/tasks/{done.id}").json()
    terminated = call("DELETE", f"/tasks/{done.id}")
    gone = call("GET", f"/tasks/{done.id}")

    assert (restarted.status_code, restarted.json()) == (200, "Task restarted")
    assert after_restart["status"] == "PENDING"
    assert after_restart["queue_task_id"] != queue_before
    assert (terminated.status_code, terminated.json()) == (200, "Task removed")
    assert gone.status_code == 404
    assert gone.json()["error"] is True


def test_a_wrong_key_gets_the_documented_401(account: OutscraperAPI) -> None:
    with pytest.raises(Exception, match="Response status code: 401"):
        sdk("wrong").get_tasks()
    answer = sdk("wrong")._request("GET", "/tasks", use_handle_response=False)

    assert answer.json() == {"error": True, "errorMessage": UNAUTHORIZED}


# -- requests ----------------------------------------------------------------------------------


def test_requests_history_lists_finished_and_running_requests(account: OutscraperAPI) -> None:
    client = sdk()

    finished = client.get_requests_history(type="finished")
    running = client.get_requests_history(type="running")

    assert {r["id"] for r in finished} == {
        r.id for r in account.requests.values() if r.finished_at is not None
    }
    assert {r["status"] for r in finished} == {"Success"}
    assert [r["status"] for r in running] == ["Pending"]
    assert client.get_requests_history(type="finished", skip=1, page_size=1) == finished[1:2]


def test_request_archive_holds_one_array_per_query(account: OutscraperAPI) -> None:
    request_id = finished_request(account)

    archive = sdk().get_request_archive(request_id)

    request = account.requests[request_id]
    assert (archive["id"], archive["status"]) == (request_id, "Success")
    assert len(archive["data"]) == len(request.queries)
    assert all(len(rows) == request.rows_per_query for rows in archive["data"])
    assert archive["data"][0][0]["query"] == request.queries[0]


def test_request_archive_with_flat_true_is_one_flat_list(account: OutscraperAPI) -> None:
    request_id = finished_request(account)
    nested = sdk().get_request_archive(request_id)["data"]

    flat = call("GET", f"/requests/{request_id}", params={"flat": "true"}).json()
    not_flat = call("GET", f"/requests/{request_id}", params={"flat": "false"}).json()

    assert flat["data"] == [row for rows in nested for row in rows]
    assert all(isinstance(row, dict) for row in flat["data"])
    assert not_flat["data"] == nested


def test_request_results_read_through_the_sdks_response_handler(account: OutscraperAPI) -> None:
    request_id = finished_request(account)

    data = sdk()._request("GET", f"/requests/{request_id}", params={"flat": "true"})

    assert len(data) == sum(len(rows) for rows in account.requests[request_id].data)


def test_a_pending_or_expired_request_reads_pending(account: OutscraperAPI) -> None:
    pending = next(r.id for r in account.requests.values() if r.finished_at is None)
    request_id = finished_request(account)

    assert sdk().get_request_archive(pending) == {"id": pending, "status": "Pending"}
    account.clock += account.retention + timedelta(minutes=1)
    assert sdk().get_request_archive(request_id) == {"id": request_id, "status": "Pending"}
