"""Reworkd end to end: real sandbox over HTTP, real dlt pipelines, real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scrapesync.sandbox import FaultRule
from scrapesync.sandbox.reworkd import DEFAULT_KEY

GROUPS = ["g-alpha", "g-beta"]


@pytest.fixture
def rw(harness: Any) -> Any:
    return harness("reworkd", groups=list(GROUPS), records_per_group=250)


def assert_equals_truth(rw: Any) -> None:
    """`outputs` and `outputs__files` hold exactly the sandbox's live records and their files."""
    truth = rw.api.truth()
    expected = {
        (group, key, record["value_hash"])
        for group, records in truth.items()
        for key, record in records.items()
    }
    rows = rw.query("SELECT group_id, key_hash, value_hash FROM reworkd.outputs")
    assert len(rows) == len(set(rows)), "duplicate rows in outputs"
    assert set(rows) == expected
    expected_files = {
        (group, key, file["id"])
        for group, records in truth.items()
        for key, record in records.items()
        for file in record["files"]
    }
    files = rw.query("SELECT group_id, key_hash, file_id FROM reworkd.outputs__files")
    assert len(files) == len(set(files)), "duplicate rows in outputs__files"
    assert set(files) == expected_files


def group_requests(rw: Any, group: str) -> list[Any]:
    return rw.requests(f"/v1/outputs/{group}$")


def test_given_groups_when_first_sync_then_every_live_record_lands_typed(rw: Any) -> None:
    report = rw.sync()

    assert_equals_truth(rw)
    assert {t.table: t.inserted for t in report.tables}["outputs"] == 500
    columns = dict(
        rw.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'reworkd' AND table_name = 'outputs'"
        )
    )
    assert columns["update_date"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["data__price"] == "DOUBLE"
    assert columns["data__seller__verified"] == "BOOLEAN"
    assert columns["tags__region"] == "VARCHAR"
    # a full first read: no watermark sent, pages of the configured size
    first = group_requests(rw, "g-alpha")[0]
    assert "created_after" not in first.query
    assert first.query["limit"] == ["1000"]


def test_given_changes_when_synced_again_then_only_changes_are_read_and_applied(rw: Any) -> None:
    rw.sync()
    watermark = {
        group: newest - timedelta(seconds=900)
        for group, newest in rw.query(
            "SELECT group_id, max(update_date) FROM reworkd.outputs GROUP BY 1"
        )
    }
    alpha = rw.api.live_keys("g-alpha")
    updated, deleted = alpha[0], alpha[1]
    rw.api.clock += timedelta(hours=1)
    rw.api.update("g-alpha", updated)
    rw.api.delete("g-alpha", deleted)
    created = rw.api.create("g-beta")
    rw.sandbox.requests.clear()

    report = rw.sync()

    assert_equals_truth(rw)
    # one request per group, each with that group's watermark minus the 15 min lookback
    for group in GROUPS:
        (request,) = group_requests(rw, group)
        expected = watermark[group].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert request.query["created_after"] == [expected]
    outputs = {t.table: t for t in report.tables}["outputs"]
    assert (outputs.inserted, outputs.deleted) == (1, 1)
    assert rw.scalar(f"SELECT count(*) FROM reworkd.outputs WHERE key_hash = '{deleted}'") == 0
    assert (
        rw.scalar(f"SELECT count(*) FROM reworkd.outputs__files WHERE key_hash = '{deleted}'") == 0
    )
    assert (
        rw.scalar(f"SELECT change_type FROM reworkd.outputs WHERE key_hash = '{updated}'")
        == "UPDATE"
    )
    assert rw.scalar(f"SELECT count(*) FROM reworkd.outputs WHERE key_hash = '{created}'") == 1


def test_given_no_change_when_synced_again_then_one_request_per_group_and_nothing_moves(
    rw: Any,
) -> None:
    rw.sync()
    before = rw.query("SELECT key_hash, _dlt_load_id FROM reworkd.outputs ORDER BY 1")
    rw.sandbox.requests.clear()

    rw.sync()

    assert len(rw.requests()) == len(GROUPS)
    # the lookback window re-reads a few rows; everything older is untouched
    after = rw.query("SELECT key_hash, _dlt_load_id FROM reworkd.outputs ORDER BY 1")
    assert [key for key, _ in after] == [key for key, _ in before]
    rewritten = sum(1 for old, new in zip(before, after, strict=True) if old != new)
    assert rewritten < 10
    assert_equals_truth(rw)


@pytest.mark.parametrize("mode", ["events", "latest"])
def test_given_evolving_data_when_synced_repeatedly_then_destination_equals_provider(
    harness: Any, mode: str
) -> None:
    rw = harness("reworkd", groups=list(GROUPS), records_per_group=200, mode=mode)
    rw.sync(page_size=50)
    for _ in range(3):
        rw.sandbox.advance()
        rw.sync(page_size=50)
        assert_equals_truth(rw)


def test_given_a_group_added_later_then_it_loads_in_full_without_rereading_the_others(
    rw: Any,
) -> None:
    rw.sync(group_ids=["g-alpha"])
    rw.sandbox.requests.clear()

    rw.sync(group_ids=GROUPS)

    assert_equals_truth(rw)
    assert "created_after" in group_requests(rw, "g-alpha")[0].query
    assert all("created_after" not in r.query for r in group_requests(rw, "g-beta"))


def test_given_same_key_hash_in_two_groups_then_two_rows(rw: Any) -> None:
    rw.api.create("g-alpha", key="shared-key")
    rw.api.create("g-beta", key="shared-key")

    rw.sync()

    rows = rw.query("SELECT group_id FROM reworkd.outputs WHERE key_hash = 'shared-key' ORDER BY 1")
    assert rows == [("g-alpha",), ("g-beta",)]


@pytest.mark.parametrize("lookback", [0, 900])
def test_given_equal_timestamps_across_page_boundary_then_nothing_lost_or_duplicated(
    harness: Any, lookback: int
) -> None:
    rw = harness("reworkd", groups=["g-alpha"], records_per_group=0)
    moment = rw.api.clock
    keys = [rw.api.create("g-alpha", at=moment) for _ in range(25)]
    rw.sync(page_size=10, lookback=lookback)
    # more changes at the very same second: new records and an update of a loaded one
    late = [rw.api.create("g-alpha", at=moment) for _ in range(3)]
    rw.api.update("g-alpha", keys[0], at=moment)

    rw.sync(page_size=10, lookback=lookback)

    assert_equals_truth(rw)
    assert rw.scalar("SELECT count(*) FROM reworkd.outputs") == 28
    assert set(late) <= {row[0] for row in rw.query("SELECT key_hash FROM reworkd.outputs")}


def test_given_a_late_change_within_lookback_then_next_sync_picks_it_up(rw: Any) -> None:
    rw.sync()
    newest = max(r["update_date"] for recs in rw.api.truth().values() for r in recs.values())
    late_at = datetime.fromisoformat(newest) - timedelta(minutes=5)
    late_key = rw.api.create("g-alpha", at=late_at)

    rw.sync()

    assert rw.scalar(f"SELECT count(*) FROM reworkd.outputs WHERE key_hash = '{late_key}'") == 1
    assert_equals_truth(rw)


@pytest.mark.parametrize(
    "fault",
    [
        FaultRule("reworkd", kind="status", status=429, headers={"Retry-After": "1"}, times=2),
        FaultRule("reworkd", kind="status", status=429, headers={"Retry-After": "0"}, times=2),
        FaultRule("reworkd", kind="status", status=503, times=2),
        FaultRule("reworkd", kind="status", status=502, times=1, skip=1),
        FaultRule("reworkd", kind="drop", times=2),
        FaultRule("reworkd", kind="truncate", times=1),
        FaultRule("reworkd", kind="delay", delay=0.3, times=2),
    ],
    ids=[
        "429-retry-after",
        "429-retry-after-0",
        "503",
        "502-mid-pagination",
        "drop",
        "truncate",
        "slow",
    ],
)
def test_given_transient_faults_then_sync_survives_with_correct_data(
    rw: Any, fault: FaultRule
) -> None:
    rw.sandbox.faults.add(fault)

    report = rw.sync(page_size=100)

    assert_equals_truth(rw)
    served = [r for r in rw.requests() if r.fault]
    assert served, "the fault was never injected"
    if fault.status in (429, 502, 503) and fault.kind == "status":
        assert report.stats.retries >= 1


def sync_then_break(rw: Any, fault: FaultRule | None = None, **overrides: Any) -> Any:
    """Load once, change the provider, then sync with a fault or bad option."""
    rw.sync()
    before = rw.query("SELECT * FROM reworkd.outputs ORDER BY group_id, key_hash")
    rw.sandbox.advance()
    if fault:
        rw.sandbox.faults.add(fault)
    report = rw.sync(expect_ok=False, **overrides)
    assert not report.ok
    after = rw.query("SELECT * FROM reworkd.outputs ORDER BY group_id, key_hash")
    assert after == before, "a failed sync changed loaded data"
    return report


def test_given_wrong_api_key_then_clear_error_and_loaded_data_intact(rw: Any) -> None:
    report = sync_then_break(rw, api_key="rwk_wrong_secret_value")

    assert "reworkd: GET /v1/outputs/" in report.error
    assert "401" in report.error
    assert "sources.reworkd.api_key" in report.error
    assert "SOURCES__REWORKD__API_KEY" in report.error
    assert "rwk_wrong_secret_value" not in report.error
    # the data the failed sync did not load arrives with the next good sync
    rw.sync()
    assert_equals_truth(rw)


def test_given_unknown_group_then_error_names_the_group_and_setting(rw: Any) -> None:
    report = sync_then_break(rw, group_ids=["g-alpha", "g-nope"])

    assert "404" in report.error
    assert "'g-nope'" in report.error
    assert "sources.reworkd.group_ids" in report.error


@pytest.mark.parametrize("kind", ["html", "malformed"])
def test_given_malformed_body_then_clear_error_and_state_not_advanced(rw: Any, kind: str) -> None:
    report = sync_then_break(rw, FaultRule("reworkd", kind=kind, times=None))

    assert "malformed response" in report.error
    assert "reworkd: GET /v1/outputs/" in report.error
    rw.sandbox.faults.clear()
    rw.sync()
    assert_equals_truth(rw)


def test_given_retry_after_beyond_the_cap_then_fails_fast_with_advice(rw: Any) -> None:
    rw.sandbox.faults.add(
        FaultRule("reworkd", kind="status", status=429, headers={"Retry-After": "7200"}, times=None)
    )

    report = rw.sync(expect_ok=False)

    assert report.seconds < 60
    assert "asks to wait 7200 s" in report.error
    assert "RUNTIME__REQUEST_MAX_RETRY_DELAY" in report.error
    # groups are read concurrently: each asked once, none retried
    assert all(len(group_requests(rw, group)) <= 1 for group in GROUPS)


def test_given_persistent_5xx_then_gives_up_after_bounded_attempts(rw: Any) -> None:
    rw.sandbox.faults.add(FaultRule("reworkd", kind="status", status=500, times=None))

    report = rw.sync(expect_ok=False)

    assert "500" in report.error
    assert "gave up" in report.error
    # RUNTIME__REQUEST_MAX_ATTEMPTS in conftest, per group (groups are read concurrently)
    attempts = [len(group_requests(rw, group)) for group in GROUPS]
    assert max(attempts) == 4
    assert all(count <= 4 for count in attempts)


def test_given_a_cursor_that_repeats_then_pagination_stops_with_an_error(rw: Any) -> None:
    item = rw.api.groups["g-alpha"].encoded[0].decode()
    looping = '{"metadata": {"next_cursor": 5, "next_url": null}, "items": [' + item + "]}"
    rw.sandbox.faults.add(FaultRule("reworkd", kind="status", status=200, body=looping, times=None))

    # one group at a time: every group loops, and with several in flight the first to repeat
    # its cursor (not always g-alpha) stops the sync
    report = rw.sync(expect_ok=False, concurrency=1)

    assert "pagination loops" in report.error
    assert len(group_requests(rw, "g-alpha")) == 2


def test_given_bad_options_then_clear_errors(rw: Any) -> None:
    assert "page_size=5000" in rw.sync(expect_ok=False, page_size=5000).error
    assert "sources.reworkd.group_ids" in rw.sync(expect_ok=False, group_ids=[]).error


def test_given_interrupted_run_then_next_sync_finishes_it_and_syncs_new_data(rw: Any) -> None:
    from scrapesync.pipelines import registry
    from scrapesync.pipelines.runner import pipeline_for

    rw.sync()
    rw.sandbox.advance()
    # a run that extracted and then died before normalize/load
    pipeline = pipeline_for("reworkd")
    pipeline.extract(registry.get("reworkd").source(**rw.options()))
    assert pipeline.list_extracted_load_packages()
    rw.sandbox.advance()

    report = rw.sync()

    assert report.recovered_packages == 1
    assert not pipeline_for("reworkd").has_pending_data
    assert_equals_truth(rw)


def test_sandbox_rejects_what_the_real_api_rejects(rw: Any) -> None:
    """The sandbox is only useful if it is as strict as the documented API."""
    from dlt.sources.helpers.requests import Client

    requests = Client(raise_for_status=False, request_max_attempts=1).session
    url = rw.sandbox.url("reworkd") + "/v1/outputs/g-alpha"
    auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    assert requests.get(url, headers=auth, params={"limit": 1001}).status_code == 422
    assert requests.get(url, headers=auth, params={"cursor": -1}).status_code == 422
    not_a_number = requests.get(url, headers=auth, params={"cursor": "abc"})
    assert not_a_number.status_code == 422
    assert not_a_number.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert requests.get(url, headers=auth, params={"created_after": "yesterday"}).status_code == 422
    assert requests.get(url).status_code == 403
    assert requests.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    page = requests.get(url, headers=auth, params={"limit": "2", "region": "US-CA"}).json()
    assert all(item["tags"]["region"] == "US-CA" for item in page["items"])
    assert "/v1/items?cursor=" in page["metadata"]["next_url"]


def test_given_history_mode_then_every_version_is_kept_with_validity(harness: Any) -> None:
    rw = harness("reworkd", groups=["g-alpha"], records_per_group=30)
    rw.sync(history=True)
    changed, removed = rw.api.live_keys("g-alpha")[:2]
    start = rw.api.clock
    rw.api.update("g-alpha", changed, at=start + timedelta(minutes=10))
    rw.api.update("g-alpha", changed, at=start + timedelta(minutes=20))
    rw.api.delete("g-alpha", removed, at=start + timedelta(minutes=30))

    rw.sync(history=True)

    versions = rw.query(
        "SELECT valid_from, valid_to, change_type FROM reworkd.outputs_history "
        f"WHERE key_hash = '{changed}' ORDER BY _version"
    )
    assert [row[2] for row in versions] == ["CREATE", "UPDATE", "UPDATE"]
    assert versions[0][1] == versions[1][0]
    assert versions[1][1] == versions[2][0]
    assert versions[2][1] is None
    gone = rw.query(
        "SELECT change_type, valid_from, valid_to FROM reworkd.outputs_history "
        f"WHERE key_hash = '{removed}' ORDER BY _version"
    )
    assert [row[0] for row in gone] == ["CREATE", "DELETE"]
    assert gone[0][2] == gone[1][1]
    assert gone[1][2] == gone[1][1], "a delete closes the record: no current version"
    # the current versions are exactly the live records, as in `outputs`
    current = rw.query(
        "SELECT key_hash, value_hash FROM reworkd.outputs_history WHERE valid_to IS NULL"
    )
    assert sorted(current) == sorted(rw.query("SELECT key_hash, value_hash FROM reworkd.outputs"))
    assert_equals_truth(rw)
    # a re-read of the lookback window adds no version
    before = rw.scalar("SELECT count(*) FROM reworkd.outputs_history")
    rw.sync(history=True)
    assert rw.scalar("SELECT count(*) FROM reworkd.outputs_history") == before


def test_given_many_changes_in_one_second_then_the_state_stays_one_row_per_group(
    harness: Any,
) -> None:
    """A bulk import at one second: with no lookback the inclusive filter hands those rows
    back on every sync; merge absorbs them, and the only state kept is one watermark row per
    group (dlt's incremental used to keep one boundary hash per row of that second)."""
    rw = harness("reworkd", groups=["g-alpha"], records_per_group=0)
    moment = rw.api.clock
    for _ in range(500):
        rw.api.create("g-alpha", at=moment)

    rw.sync(page_size=100, lookback=0)
    rw.sync(page_size=100, lookback=0)
    rw.api.create("g-alpha", at=moment + timedelta(seconds=1))
    rw.sync(page_size=100, lookback=0)

    assert rw.query("SELECT partition, watermark FROM reworkd._scrapesync_partitions") == [
        ("g-alpha", (moment + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    ]
    assert rw.scalar("SELECT count(*) FROM reworkd.outputs") == 501
    assert_equals_truth(rw)
