"""Reworkd at many groups: one resource, a watermark row per group, shards, fresh workers and the
upgrade from per-group dlt state. Real sandbox over HTTP, real dlt pipelines, real DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from scrapesync.pipelines.runner import pipeline_for

GROUPS = 200
LOOKBACK = timedelta(seconds=900)


@pytest.fixture
def many(harness: Any) -> Any:
    return harness("reworkd", groups=GROUPS, records_per_group=3)


def assert_equals_truth(rw: Any) -> None:
    """`outputs` and `outputs__files` hold exactly the sandbox's live records and files."""
    truth = rw.api.truth()
    live = [
        (group, key, record) for group, records in truth.items() for key, record in records.items()
    ]
    rows = rw.query("SELECT group_id, key_hash, value_hash FROM reworkd.outputs")
    assert len(rows) == len(set(rows)), "duplicate rows in outputs"
    assert set(rows) == {(group, key, record["value_hash"]) for group, key, record in live}
    files = rw.query("SELECT group_id, key_hash, file_id FROM reworkd.outputs__files")
    assert len(files) == len(set(files)), "duplicate rows in outputs__files"
    assert set(files) == {
        (group, key, file["id"]) for group, key, record in live for file in record["files"]
    }


def writable(rw: Any) -> Any:
    """The DuckDB file opened for writing (to stage what an older release or a crash left)."""
    return duckdb.connect(str(rw.db_path))


def watermarks(rw: Any) -> dict[str, datetime]:
    rows = rw.query(
        "SELECT partition, watermark FROM reworkd._scrapesync_partitions WHERE resource = 'outputs'"
    )
    return {group: datetime.fromisoformat(mark.replace("Z", "+00:00")) for group, mark in rows}


def asked_from(rw: Any) -> dict[str, list[str | None]]:
    """Per group, the `created_after` of each request the sandbox logged."""
    asked: dict[str, list[str | None]] = {}
    for request in rw.requests("/v1/outputs/"):
        group = request.path.rsplit("/", 1)[-1]
        asked.setdefault(group, []).append(request.query.get("created_after", [None])[0])
    return asked


def minus_lookback(moment: datetime) -> str:
    return (moment - LOOKBACK).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def late_changes(rw: Any, groups: list[str]) -> list[str]:
    """A record created 5 minutes before each group's newest change: inside the lookback."""
    late = []
    for group in groups:
        newest = max(r["update_date"] for r in rw.api.truth()[group].values())
        late.append(rw.api.create(group, at=datetime.fromisoformat(newest) - timedelta(minutes=5)))
    return late


def test_given_hundreds_of_groups_when_data_changes_then_equal_truth_and_one_request_each(
    many: Any,
) -> None:
    many.sync()
    assert_equals_truth(many)
    assert len(watermarks(many)) == GROUPS
    groups = list(many.api.groups)

    many.sandbox.advance()  # updates, deletes and new records in every group
    late = late_changes(many, groups[:10])
    many.sync()

    assert_equals_truth(many)
    keys = {row[0] for row in many.query("SELECT key_hash FROM reworkd.outputs")}
    assert set(late) <= keys
    # nothing changed since: exactly one request per group, each from its own watermark
    marks = watermarks(many)
    many.sandbox.requests.clear()
    report = many.sync()
    asked = asked_from(many)
    assert len(asked) == GROUPS
    assert all(asked[group] == [minus_lookback(marks[group])] for group in groups)
    assert report.stats.requests == GROUPS
    assert watermarks(many) == marks
    assert_equals_truth(many)


def test_given_a_fresh_worker_then_it_continues_from_the_destinations_watermarks(
    many: Any, tmp_path: Path
) -> None:
    many.sync_with(many.options(), pipelines_dir=str(tmp_path / "worker-a"))
    marks = watermarks(many)
    many.sandbox.advance()
    many.sandbox.requests.clear()

    # a new worker: an empty dlt working dir, the same destination
    report = many.sync_with(many.options(), pipelines_dir=str(tmp_path / "worker-b"))

    assert report.ok, report.error
    asked = asked_from(many)
    assert all(asked[group][0] == minus_lookback(marks[group]) for group in many.api.groups)
    assert_equals_truth(many)


def test_given_two_shards_then_three_then_equal_truth_and_at_most_the_lookback_reread(
    many: Any, tmp_path: Path
) -> None:
    for index in range(2):
        report = many.sync_with(
            many.options(shard=f"{index}/2"), pipelines_dir=str(tmp_path / f"two-{index}")
        )
        assert report.ok, report.error
    assert_equals_truth(many)
    many.sandbox.advance()
    marks = watermarks(many)
    many.sandbox.requests.clear()

    for index in range(3):
        report = many.sync_with(
            many.options(shard=f"{index}/3"), pipelines_dir=str(tmp_path / f"three-{index}")
        )
        assert report.ok, report.error

    assert_equals_truth(many)
    # every group was read by exactly one of the three, from its watermark minus the lookback
    asked = asked_from(many)
    assert set(asked) == set(many.api.groups)
    assert all(asked[group][0] == minus_lookback(marks[group]) for group in asked)


def test_given_a_shard_then_only_its_groups_are_read(many: Any) -> None:
    many.sync(shard="1/4")

    read = set(asked_from(many))
    assert read
    assert len(read) < GROUPS
    loaded = {row[0] for row in many.query("SELECT DISTINCT group_id FROM reworkd.outputs")}
    assert loaded == read == set(watermarks(many))


def test_given_state_of_the_per_group_release_then_the_upgrade_continues_from_it(
    harness: Any,
) -> None:
    """An older release kept one dlt incremental per group (resource `outputs_<group>`); a
    group without a `_scrapesync_partitions` row starts from that value, not from scratch."""
    rw = harness("reworkd", groups=["g-old", "g-new"], records_per_group=30)
    rw.sync()
    old_mark = watermarks(rw)["g-old"]
    # what the older release left: no partition rows, the watermark in the source state
    with writable(rw) as db:
        db.execute("DELETE FROM reworkd._scrapesync_partitions")
    pipeline = pipeline_for("reworkd")
    with pipeline.managed_state() as state:
        resources = state["sources"]["reworkd"].setdefault("resources", {})
        resources["outputs_g-old"] = {"incremental": {"update_date": {"last_value": old_mark}}}
    rw.sandbox.advance()
    rw.sandbox.requests.clear()

    rw.sync()

    asked = asked_from(rw)
    assert asked["g-old"] == [minus_lookback(old_mark)]
    assert asked["g-new"] == [None]  # no row, no old state: read in full
    assert set(watermarks(rw)) == {"g-old", "g-new"}
    assert_equals_truth(rw)


def test_given_a_load_that_never_completed_then_its_watermark_is_not_trusted(
    many: Any,
) -> None:
    """A worker that died mid-load may have loaded the watermark rows but not the outputs: a
    row whose load is not in `_dlt_loads` counts from the watermark it started from."""
    many.sync()
    before = watermarks(many)
    many.sandbox.advance()
    many.sync()
    group = next(iter(many.api.groups))
    with writable(many) as db:
        (load_id,) = db.execute(
            "SELECT _dlt_load_id FROM reworkd._scrapesync_partitions WHERE partition = ?", [group]
        ).fetchone()
        db.execute("DELETE FROM reworkd._dlt_loads WHERE load_id = ?", [load_id])
    many.sandbox.requests.clear()

    many.sync()

    assert asked_from(many)[group] == [minus_lookback(before[group])]
    assert_equals_truth(many)


def test_given_a_full_refresh_then_every_group_is_read_from_the_start(harness: Any) -> None:
    rw = harness("reworkd", groups=["g-a", "g-b"], records_per_group=20)
    rw.sync()
    rw.sandbox.advance()
    rw.sandbox.requests.clear()

    report = rw.sync_with(rw.options(), full_refresh=True)

    assert report.ok, report.error
    # dlt drops the tables when it loads; the watermarks still there at extract do not count
    assert asked_from(rw) == {"g-a": [None], "g-b": [None]}
    assert set(watermarks(rw)) == {"g-a", "g-b"}
    assert_equals_truth(rw)


def test_given_a_sync_killed_before_its_upkeep_then_the_next_sync_upkeeps_that_load(
    harness: Any,
) -> None:
    """The after-load SQL is scoped to the loads not upkept yet: a load whose process died
    before its upkeep is covered by the next sync, even if that sync reads none of its rows."""
    from scrapesync.pipelines import registry

    rw = harness("reworkd", groups=["g-alpha"], records_per_group=10)
    rw.sync(history=True)
    key = rw.api.live_keys("g-alpha")[0]
    start = rw.api.clock
    rw.api.update("g-alpha", key, at=start + timedelta(minutes=10))
    rw.api.update("g-alpha", key, at=start + timedelta(minutes=20))
    rw.api.create("g-alpha", at=start + timedelta(hours=2))  # the watermark moves past them
    # a run that loaded and died before its after-load SQL
    pipeline_for("reworkd").run(registry.get("reworkd").source(**rw.options(history=True)))
    open_versions = (
        f"SELECT count(*) FROM reworkd.outputs_history WHERE key_hash = '{key}' "
        "AND valid_to IS NULL"
    )
    assert rw.scalar(open_versions) == 3
    rw.sandbox.requests.clear()

    rw.sync(history=True)

    assert asked_from(rw)["g-alpha"] == [minus_lookback(start + timedelta(hours=2))]
    assert rw.scalar(open_versions) == 1
    assert_equals_truth(rw)
