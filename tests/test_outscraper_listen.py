"""Outscraper webhooks through `scrapesync listen`, and the task actions on the command line."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scrapesync.pipelines import listen
from scrapesync.pipelines.cli import main
from scrapesync.sandbox import FaultRule
from scrapesync.sandbox.outscraper import DEFAULT_KEY
from scrapesync.sources.common.inbox import StoredNotification
from scrapesync.sources.common.statedb import SPOOL_FILE, Spool
from scrapesync.sources.outscraper.cli import webhook_handler


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[listen.IntakeServer]:
    store = listen.NotificationStore(tmp_path / "webhooks")
    server = listen.IntakeServer(store, {"outscraper": webhook_handler(DEFAULT_KEY)}).start()
    yield server
    server.stop()


@pytest.fixture
def hooked(harness: Any, intake: listen.IntakeServer) -> Any:
    # the intake stores into the destination (./scrapesync.duckdb), which the sync reads;
    # `webhook_dir` (the spool) turns webhooks on in the sandbox's options
    return harness(
        "outscraper",
        webhook_url=f"{intake.url}/outscraper/hook",
        webhook_dir=str(intake.store.db.spool_dir),
    )


def pending(intake: listen.IntakeServer) -> list[StoredNotification]:
    return intake.store.pending("outscraper")


def test_given_signed_webhooks_then_next_sync_reads_them_first_and_acknowledges(
    hooked: Any, intake: listen.IntakeServer
) -> None:
    hooked.sync()
    running = next(t for t in hooked.api.tasks.values() if t.status == "IN_PROGRESS")
    waiting = next(r for r in hooked.api.requests.values() if r.status == "Pending")
    hooked.api.finish_task(running.id)
    hooked.api.finish_request(waiting.id)
    assert [status for _, _, status in hooked.api.deliveries] == [200, 200]
    assert {(n.kind, n.object_id) for n in pending(intake)} == {
        ("task", running.id),
        ("request", waiting.id),
    }
    hooked.sandbox.requests.clear()

    hooked.sync(discover_requests=False)

    paths = [r.path for r in hooked.requests() if not r.path.startswith("/files/")]
    assert paths.index(f"/tasks/{running.id}") < paths.index("/tasks")
    assert f"/requests/{waiting.id}" in paths  # known only from the webhook
    collected = hooked.scalar(
        f"SELECT count(*) FROM outscraper.request_results WHERE request_id = '{waiting.id}'"
    )
    assert collected == 10
    assert hooked.scalar(f"SELECT status FROM outscraper.tasks WHERE id = '{running.id}'") == (
        "SUCCESS"
    )
    assert pending(intake) == []


def test_given_a_forged_webhook_then_401_and_nothing_stored(
    hooked: Any, intake: listen.IntakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = hooked.api.webhook_body("forged-task", "SUCCESS", api_task=False)
    forged = "sha256=" + "0" * 64
    other_key = hooked.api.sign(body).replace("a", "b")

    with caplog.at_level(logging.WARNING):
        statuses = [
            hooked.api.deliver(body, forged),
            hooked.api.deliver(body, None),
            hooked.api.deliver(body, other_key),
            hooked.api.deliver(body + b" ", hooked.api.sign(body)),  # body altered after signing
        ]

    assert statuses == [401, 401, 401, 401]
    assert pending(intake) == []
    rejections = [r.message for r in caplog.records if "rejected outscraper webhook" in r.message]
    assert len(rejections) == 4
    assert all(DEFAULT_KEY not in line and forged not in line for line in rejections)


def test_given_a_replayed_or_duplicate_webhook_then_it_is_stored_once(
    hooked: Any, intake: listen.IntakeServer
) -> None:
    body = hooked.api.webhook_body("20250101000000abcd", "SUCCESS", api_task=False)
    signature = hooked.api.sign(body)

    assert hooked.api.deliver(body, signature) == 200
    assert hooked.api.deliver(body, signature) == 200  # a replay is harmless

    assert len(pending(intake)) == 1
    # out of order: an older status after a newer one is just another hint to read the task
    older = hooked.api.webhook_body("20250101000000abcd", "PENDING", api_task=False)
    assert hooked.api.deliver(older, hooked.api.sign(older)) == 200
    assert len(pending(intake)) == 2
    # the notified task does not exist: the sync reads it, finds nothing, and goes on
    hooked.sync()
    assert pending(intake) == []


def test_given_a_failed_sync_then_notifications_stay_pending(
    hooked: Any, intake: listen.IntakeServer
) -> None:
    running = next(t for t in hooked.api.tasks.values() if t.status == "IN_PROGRESS")
    hooked.api.finish_task(running.id)
    hooked.sandbox.faults.add(FaultRule("outscraper", path="^/tasks$", status=500, times=None))

    assert not hooked.sync(expect_ok=False).ok

    assert [n.object_id for n in pending(intake)] == [running.id]
    hooked.sandbox.faults.clear()
    hooked.sync()
    assert pending(intake) == []


def test_given_a_bad_payload_or_unknown_provider_then_it_is_refused(
    intake: listen.IntakeServer,
) -> None:
    from dlt.sources.helpers.requests import Client

    http = Client(raise_for_status=False, request_max_attempts=1).session
    body = b"not json"
    from scrapesync.sources.outscraper.webhooks import signature

    signed = {"X-Hub-Signature-256": signature(body, DEFAULT_KEY)}
    assert http.post(f"{intake.url}/outscraper/x", data=body, headers=signed).status_code == 400
    assert http.post(f"{intake.url}/nobody/x", data=b"{}").status_code == 404
    assert pending(intake) == []


def test_cli_restart_and_terminate_print_clear_results(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = make_sandbox()
    api = sandbox.providers["outscraper"]
    task_id = next(iter(api.tasks))
    monkeypatch.setenv("SOURCES__OUTSCRAPER__API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("SOURCES__OUTSCRAPER__BASE_URL", sandbox.url("outscraper"))

    assert main(["outscraper", "restart", task_id]) == 0
    assert f"task {task_id} restarted (Task restarted)" in capsys.readouterr().out
    assert api.tasks[task_id].status == "PENDING"
    assert main(["outscraper", "terminate", task_id]) == 0
    assert f"task {task_id} terminated (Task removed)" in capsys.readouterr().out
    assert main(["outscraper", "terminate", task_id]) == 1
    err = capsys.readouterr().err
    assert "404" in err
    assert f"task '{task_id}' does not exist" in err
    monkeypatch.setenv("SOURCES__OUTSCRAPER__API_KEY", "wrong")
    assert main(["outscraper", "restart", "20211211132758c8e9"]) == 1
    assert "SOURCES__OUTSCRAPER__API_KEY" in capsys.readouterr().err


def test_listen_is_a_command_with_every_registered_handler() -> None:
    from scrapesync.pipelines.cli import build_parser

    args = build_parser().parse_args(["listen", "--port", "9999", "--dir", "/tmp/x"])
    assert args.func is listen.cmd_listen
    assert args.port == 9999
    assert "outscraper" in listen.provider_handlers()


HOLD = """
import duckdb, sys
db = duckdb.connect(sys.argv[1])  # as a running sync's load holds the file
print("held", flush=True)
sys.stdin.readline()
db.close()
"""


def test_given_another_process_holds_the_duckdb_file_then_a_webhook_is_spooled_and_flushed(
    hooked: Any, intake: listen.IntakeServer
) -> None:
    hooked.sync()
    intake.store.db.release()  # this process lets go of the file, as between two writes
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(hooked.db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        running = next(t for t in hooked.api.tasks.values() if t.status == "IN_PROGRESS")
        hooked.api.finish_task(running.id)
        assert [status for _, _, status in hooked.api.deliveries] == [200]
        spool = Spool.at(Path(str(intake.store.db.spool_dir)) / SPOOL_FILE)
        assert spool.pending() == 1, "kept locally while the file is held"
    finally:
        if holder.stdin is not None:
            holder.stdin.write("\n")
            holder.stdin.flush()
        holder.wait(timeout=60)

    for _ in range(600):  # the background flush takes the file once it is free
        if not spool.pending():
            break
        time.sleep(0.1)
    assert spool.pending() == 0
    assert [n.object_id for n in pending(intake)] == [running.id]
    hooked.sync()
    assert hooked.scalar(f"SELECT status FROM outscraper.tasks WHERE id = '{running.id}'") == (
        "SUCCESS"
    )
    assert pending(intake) == []
