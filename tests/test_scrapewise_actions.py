"""Scrapewise actions and failure modes: merge, two-call delete, run/stop, clear errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scrapesync.pipelines import cli
from scrapesync.sandbox import FaultRule
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.scrapewise.actions import commit_delete, merge_runs, preview_delete
from scrapesync.sources.scrapewise.client import make_client

MERGE = "/merge$"


@pytest.fixture
def sw(harness: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    sw = harness("scrapewise", runs_per_scraper=3)
    options = sw.options()
    monkeypatch.setenv("SOURCES__SCRAPEWISE__API_KEY", options["api_key"])
    monkeypatch.setenv("SOURCES__SCRAPEWISE__BASE_URL", options["base_url"])
    return sw


def client(sw: Any) -> Any:
    options = sw.options()
    return make_client(options["api_key"], options["base_url"])


def latest_completed(sw: Any, group_id: str) -> list[str]:
    """Each scraper's latest COMPLETED run in the group (what merge accepts)."""
    data = sw.api.data
    return [
        run_id
        for scraper in data.scrapers.values()
        if scraper["groupId"] == group_id
        and (run_id := data._latest_completed(scraper["id"])) is not None
    ]


def finished_run_with_rows(sw: Any) -> str:
    rows = sw.api.truth()["rows"]
    return next(iter(rows))[0]


def test_given_a_merge_when_synced_then_enriched_rows_land_and_are_replaced_only_on_change(
    sw: Any,
) -> None:
    group = next(iter(sw.api.data.groups))
    merged = merge_runs(client(sw), group, latest_completed(sw, group))
    assert merged > 0

    sw.sync()
    loaded = sw.query("SELECT _dlt_load_id, title FROM scrapewise.enriched_rows")
    assert len(loaded) == merged
    assert {row[1] for row in loaded} == {t for g, t in sw.api.truth()["enriched_rows"]}
    sw.sync()
    assert sw.query("SELECT _dlt_load_id, title FROM scrapewise.enriched_rows") == loaded

    # a merge of one run replaces the whole enriched dataset of the group
    again = merge_runs(client(sw), group, latest_completed(sw, group)[:1])
    sw.sync()
    assert sw.scalar("SELECT count(*) FROM scrapewise.enriched_rows") == again


def test_given_a_lost_merge_response_then_the_retry_reuses_the_key_and_merges_once(
    sw: Any,
) -> None:
    group = next(iter(sw.api.data.groups))
    # the first answer is cut off after the merge ran: dlt's session retries the call
    sw.sandbox.faults.add(FaultRule("scrapewise", path=MERGE, kind="truncate", times=1))

    merged = merge_runs(client(sw), group, latest_completed(sw, group))

    puts = [key for method, key in sw.api.idempotency_log if method == "PUT"]
    assert len(puts) == 2
    assert puts[0] == puts[1]
    assert puts[0]
    assert sw.api.writes_applied == 1
    assert merged > 0


def test_given_merge_refusals_then_the_cli_explains_them(sw: Any, capsys: Any) -> None:
    group = next(iter(sw.api.data.groups))
    older = sorted(
        (run for run in sw.api.data.runs.values() if run.group_id == group),
        key=lambda run: run.started,
    )[0].id

    assert cli.main(["scrapewise", "merge", group, older]) == 1
    assert "latest COMPLETED run of its scraper" in capsys.readouterr().out

    sw.api.features.clear()
    assert cli.main(["scrapewise", "merge", group, *latest_completed(sw, group)]) == 1
    out = capsys.readouterr().out
    assert "402" in out
    assert "DATA_ENRICHMENT" in out
    assert cli.main(["scrapewise", "merge", group, "not-an-id"]) == 1
    assert "24 hex characters" in capsys.readouterr().out


def test_given_delete_run_data_then_rows_vanish_at_the_provider_and_in_the_destination(
    sw: Any, capsys: Any
) -> None:
    sw.sync()
    job = finished_run_with_rows(sw)
    assert sw.scalar(f"SELECT count(*) FROM scrapewise.rows WHERE job_id = '{job}'") > 0
    sw.sandbox.requests.clear()

    assert cli.main(["scrapewise", "delete-run-data", job, "--yes"]) == 0

    out = capsys.readouterr().out
    assert "permanently deleted" in out  # the preview's warning was shown
    calls = [(r.method, r.path) for r in sw.requests("/api/scraper/data")]
    assert calls == [("POST", "/api/scraper/data/preview-delete"), ("DELETE", "/api/scraper/data")]
    assert sw.scalar(f"SELECT count(*) FROM scrapewise.rows WHERE job_id = '{job}'") == 0
    assert all(run != job for run, _ in sw.api.truth()["rows"])
    sw.sync()
    assert sw.scalar(f"SELECT count(*) FROM scrapewise.rows WHERE job_id = '{job}'") == 0


def test_given_no_confirmation_then_nothing_is_deleted(sw: Any, capsys: Any) -> None:
    job = finished_run_with_rows(sw)

    # pytest's stdin is not a terminal: without --yes the CLI must not commit
    assert cli.main(["scrapewise", "delete-run-data", job]) == 1

    assert "nothing deleted" in capsys.readouterr().out
    assert [r.method for r in sw.requests("/api/scraper/data")] == ["POST"]
    assert any(run == job for run, _ in sw.api.truth()["rows"])


def test_given_an_expired_preview_then_the_delete_is_refused(sw: Any) -> None:
    job = finished_run_with_rows(sw)
    api = client(sw)
    preview = preview_delete(api, job)

    # locally: five minutes passed, nothing is sent
    with pytest.raises(ValueError, match="expired"):
        commit_delete(api, preview, now=lambda: preview.minted_at + 301)
    assert [r.method for r in sw.requests("/api/scraper/data")] == ["POST"]

    # at Scrapewise: the token's clock ran out even though ours did not
    sw.api.wall_offset = 301
    with pytest.raises(ProviderAPIError) as failure:
        commit_delete(api, preview)
    assert failure.value.status == 400
    assert "PREVIEW_TOKEN_EXPIRED" in str(failure.value)
    assert any(run == job for run, _ in sw.api.truth()["rows"])
    with pytest.raises(TypeError):
        commit_delete(api, job)  # type: ignore[arg-type]  # a job id is not a preview


def test_given_run_and_stop_then_the_scraper_moves_through_its_states(sw: Any, capsys: Any) -> None:
    data = sw.api.data
    scraper = next(s for s in data.scrapers if data.active_run(s) is not None)
    queued = data.active_run(scraper)

    assert cli.main(["scrapewise", "run", scraper]) == 1  # one active run at a time
    assert "already in RUNNING or PENDING" in capsys.readouterr().out
    assert cli.main(["scrapewise", "stop", scraper]) == 0
    assert queued.state == "STOPPED"
    assert cli.main(["scrapewise", "run", scraper]) == 0
    new = data.active_run(scraper)
    assert new.state == "PENDING"
    sw.sync()
    states = dict(sw.query("SELECT id, state FROM scrapewise.jobs"))
    assert (states[queued.id], states[new.id]) == ("STOPPED", "PENDING")


def test_given_a_refused_filter_then_the_sync_fails_clearly_and_keeps_data(sw: Any) -> None:
    sw.sync()
    before = sw.query("SELECT * FROM scrapewise.jobs ORDER BY id")
    sw.sandbox.advance()
    body = {"status": 400, "code": "INVALID_FILTER", "detail": "Malformed filters JSON"}
    sw.sandbox.faults.add(
        FaultRule(
            "scrapewise",
            path="/load-history$",
            kind="status",
            status=400,
            body=orjson.dumps(body).decode(),
        )
    )

    report = sw.sync(expect_ok=False)

    assert "scrapewise: GET /api/scraper/load-history returned HTTP 400" in report.error
    assert "INVALID_FILTER" in report.error
    assert "sources.scrapewise.group_ids" in report.error
    assert sw.query("SELECT * FROM scrapewise.jobs ORDER BY id") == before


def test_given_bad_options_or_key_then_clear_errors_without_the_secret(sw: Any) -> None:
    assert "page_size=5000" in sw.sync(expect_ok=False, page_size=5000).error
    assert "sources.scrapewise.group_ids" in sw.sync(expect_ok=False, group_ids=["grp_x"]).error
    assert "concurrency" in sw.sync(expect_ok=False, concurrency=0).error
    secret = "sw_live_wrong.very_secret_value"
    error = sw.sync(expect_ok=False, api_key=secret).error
    assert "401" in error
    assert "SOURCES__SCRAPEWISE__API_KEY" in error
    assert secret not in error


def test_given_persistent_5xx_then_gives_up_after_bounded_attempts(sw: Any) -> None:
    sw.sandbox.faults.add(FaultRule("scrapewise", kind="status", status=500, times=None))

    report = sw.sync(expect_ok=False)

    assert "gave up" in report.error
    assert len(sw.requests("/load-history$")) == 4  # RUNTIME__REQUEST_MAX_ATTEMPTS in conftest


def test_sandbox_rejects_what_the_real_api_rejects(sw: Any) -> None:
    from dlt.sources.helpers.requests import Client

    session = Client(raise_for_status=False, request_max_attempts=1).session
    base = sw.options()["base_url"] + "/api/scraper"
    auth = {"Authorization": f"Bearer {sw.options()['api_key']}"}
    assert session.get(f"{base}/load-history").status_code == 401
    assert session.get(f"{base}/load-history", headers={"X-API-KEY": "k"}).status_code == 401
    bad = session.get(f"{base}/load-history", headers=auth, params={"filters": "{bad"})
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_FILTER")
    assert (
        session.get(f"{base}/data/group/ffffffffffffffffffffffff", headers=auth).status_code == 400
    )
    assert session.get(f"{base}/ffffffffffffffffffffffff", headers=auth).status_code == 400
    group = next(iter(sw.api.data.groups))
    no_key = session.put(f"{base}/data/group/{group}/merge", headers=auth)
    assert no_key.status_code == 400
    page = session.get(f"{base}/load-history", headers=auth, params={"size": 3}).json()
    assert {"content", "totalElements", "totalPages", "size", "number"} <= set(page)
    assert page["totalPages"] == -(-page["totalElements"] // 3)
