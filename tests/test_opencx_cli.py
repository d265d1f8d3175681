"""`scrapesync opencx crawl|cancel|pause|resume` against the sandbox (config from env vars)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scrapesync.pipelines.cli import main
from scrapesync.sandbox.opencx import DEFAULT_KEY, READ_ONLY_KEY, TERMINAL


@pytest.fixture
def ocx(harness: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    ocx = harness("opencx", advance_on_poll=True, rate_limit=1000)
    monkeypatch.setenv("SOURCES__OPENCX__API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("SOURCES__OPENCX__BASE_URL", ocx.sandbox.url("opencx"))
    return ocx


def idle_datasource(ocx: Any) -> str:
    return next(ds for ds in sorted(ocx.api.datasources) if not ocx.api.active[ds])


def busy_datasource(ocx: Any) -> tuple[str, str]:
    return next((ds, job) for ds, job in sorted(ocx.api.active.items()) if job)


def test_given_crawl_wait_then_progress_is_shown_until_the_crawl_completes(
    ocx: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    datasource = idle_datasource(ocx)

    code = main(["opencx", "crawl", datasource, "--wait", "--interval", "0"])

    out, err = capsys.readouterr()
    job = ocx.api.jobs[datasource][-1]
    assert job["status"] == "completed"
    assert code == 0
    assert f"opencx: crawl {job['id']} started for datasource {datasource}" in out
    assert f"opencx: crawl {job['id']} completed: {job['new_pages']} new" in out
    progress = [line for line in err.splitlines() if line.startswith("[")]
    assert progress[0].endswith("0/? pages   0%  pending")
    assert any("scraping" in line for line in progress)
    assert progress[-1].startswith("[" + "#" * 30 + "]")
    assert f"{job['total_pages']}/{job['total_pages']} pages 100%  completed" in progress[-1]
    # the started crawl then syncs like any other job
    ocx.sync()
    status = ocx.scalar(f"SELECT status FROM opencx.crawl_jobs WHERE id = '{job['id']}'")
    assert status == "completed"


def test_given_a_running_crawl_when_another_is_started_then_409_names_the_running_job(
    ocx: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    datasource, running = busy_datasource(ocx)
    before = len(ocx.api.jobs[datasource])

    code = main(["opencx", "crawl", datasource])

    err = capsys.readouterr().err
    assert code == 1
    assert "HTTP 409: A crawl is already in progress" in err
    assert f"scrapesync opencx cancel {datasource} {running}" in err
    assert len(ocx.api.jobs[datasource]) == before


def test_given_cancel_then_the_job_ends_cancelled_and_a_second_cancel_is_refused(
    ocx: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    datasource, running = busy_datasource(ocx)

    assert main(["opencx", "cancel", datasource, running]) == 0
    assert f"opencx: crawl {running} cancelled" in capsys.readouterr().out
    job = next(j for j in ocx.api.jobs[datasource] if j["id"] == running)
    assert job["status"] == "cancelled"
    assert main(["opencx", "cancel", datasource, running]) == 1
    assert "409" in capsys.readouterr().err


def test_given_pause_and_resume_then_the_datasource_status_follows_and_syncs(
    ocx: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    datasource = idle_datasource(ocx)

    assert main(["opencx", "pause", datasource]) == 0
    assert f"datasource {datasource} is paused" in capsys.readouterr().out
    ocx.sync()
    assert (
        ocx.scalar(f"SELECT status FROM opencx.datasources WHERE id = '{datasource}'") == "paused"
    )
    patch = ocx.requests(f"^/crawl/{datasource}$")[0]
    assert patch.method == "PATCH"

    assert main(["opencx", "resume", datasource]) == 0
    ocx.sync()
    assert (
        ocx.scalar(f"SELECT status FROM opencx.datasources WHERE id = '{datasource}'") == "active"
    )


def test_given_malformed_ids_then_usage_error_before_any_request(
    ocx: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["opencx", "crawl", "12345"]) == 2
    assert "'12345' is not a UUID" in capsys.readouterr().err
    assert main(["opencx", "cancel", idle_datasource(ocx), "job-1"]) == 2
    assert not ocx.requests()


def test_given_a_read_only_key_when_starting_a_crawl_then_clear_scope_error(
    ocx: Any, isolated: Path
) -> None:
    """Through the installed `scrapesync` command, as a user runs it."""
    datasource = idle_datasource(ocx)
    env = {
        **os.environ,
        "SOURCES__OPENCX__API_KEY": READ_ONLY_KEY,
        "SOURCES__OPENCX__BASE_URL": ocx.sandbox.url("opencx"),
    }
    scrapesync = str(Path(sys.executable).parent / "scrapesync")

    result = subprocess.run(
        [scrapesync, "opencx", "crawl", datasource],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert f"opencx: POST /crawl/{datasource}/crawls returned HTTP 403" in result.stderr
    assert "Missing required scope: crawl:write" in result.stderr
    assert "lacks the `crawl:write` scope" in result.stderr
    assert "SOURCES__OPENCX__API_KEY" in result.stderr
    assert READ_ONLY_KEY not in result.stdout + result.stderr
    assert [(r.method, r.status) for r in ocx.requests()] == [("POST", 403)]
    assert all(job["status"] in TERMINAL for job in ocx.api.jobs[datasource])
