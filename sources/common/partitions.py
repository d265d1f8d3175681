"""Partitions: the independent units a provider syncs (groups, datasources, request ids, jobs).

Two things every provider with many partitions needs, written once:

* `Shard`: which partitions one of N parallel workers owns. Ownership is a stable hash of the
  partition id (not its position in a list), so adding a partition to the configuration moves
  no other partition between shards, and every worker computes the same split on its own.
* `map_bounded`: run one function per partition on a bounded thread pool and hand back the
  results as they complete, with at most `workers` partitions in flight. Memory is bounded by
  `workers` (never by the number of partitions), and an error in one partition is raised in
  the caller after the in-flight ones stop.

The shard setting is text `"i/N"` (0-based: `0/4` .. `3/4`), the same in config
(`sources.<provider>.shard`), env (`SOURCES__<PROVIDER>__SHARD`) and the command line
(`scrapesync sync <provider> --shard i/N`); docs/scale-out.md explains how shards are
assigned and why changing N loses no state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SHARD = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*$")
MAX_SHARDS = 1024


@dataclass(frozen=True)
class Shard:
    """Worker `index` of `count` (0-based)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str | Shard | None, setting: str = "shard") -> Shard | None:
        """`"i/N"` -> Shard(i, N); None or "" -> None (no sharding: this worker owns all)."""
        if text is None or isinstance(text, Shard):
            return text
        if not str(text).strip():
            return None
        match = _SHARD.match(str(text))
        if not match:
            raise ValueError(
                f"`{setting}` = {str(text)[:40]!r} is not a shard: write `i/N` with 0 <= i < N, "
                "e.g. `0/4` for the first of four workers"
            )
        index, count = int(match.group(1)), int(match.group(2))
        if not 0 <= index < count <= MAX_SHARDS:
            raise ValueError(
                f"`{setting}` = {text!r} is not a shard: write `i/N` with 0 <= i < N <= {MAX_SHARDS} "
                "(shards are 0-based)"
            )
        return cls(index, count)

    def owns(self, partition: str) -> bool:
        return partition_bucket(partition, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def partition_bucket(partition: str, count: int) -> int:
    """A stable bucket in 0..count-1 for `partition` (same on every machine and Python run:
    `hash()` is salted per process, a digest is not)."""
    digest = hashlib.blake2b(partition.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def owned(partitions: Iterable[str], shard: Shard | None) -> list[str]:
    """The partitions `shard` owns, in their configured order (all of them without a shard)."""
    return [p for p in partitions if shard is None or shard.owns(p)]


def map_bounded(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """`(item, fn(item))` for every item, in completion order, `workers` at a time.

    Items are submitted lazily, so a million partitions never sit in the pool's queue. The
    first exception is re-raised here once the calls already running have finished (a
    thread cannot be interrupted); closing the generator early cancels what was not started.
    """
    if workers < 1:
        raise ValueError("map_bounded: workers must be >= 1")
    pending = iter(items)
    running: dict[Future[R], T] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrapesync-part") as pool:
        try:
            for item in pending:
                running[pool.submit(fn, item)] = item
                if len(running) >= workers:
                    yield from _drain(running)
            while running:
                yield from _drain(running)
        finally:
            for future in running:
                future.cancel()


def _drain(running: dict[Future[R], T]) -> Iterator[tuple[T, R]]:
    done, _ = wait(running, return_when=FIRST_COMPLETED)
    for future in done:
        item = running.pop(future)
        yield item, future.result()
