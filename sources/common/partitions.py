"""Partitions: the independent units a provider syncs (groups, datasources, request ids, jobs).

Two things every provider with many partitions needs, written once:

* `Shard`: which partitions one of N parallel workers owns. Ownership is a stable hash of the
  partition id (not its position in a list), so adding a partition to the configuration moves
  no other partition between shards, and every worker computes the same split on its own.
* `map_bounded`: run one function per partition on a bounded thread pool and hand back the
  results as they complete, with at most `workers` partitions in flight. Memory is bounded by
  `workers` (never by the number of partitions), and an error in one partition is raised in
  the caller after the in-flight ones stop.
* `fan_in`: the same pool for partitions that each yield many pages: the pages of every
  partition reach one consumer (a dlt resource's generator) through a bounded buffer, so a
  partition of 200k records is never held in memory, and the consumer learns when a partition
  has no more pages (`PARTITION_END`).
* Watermarks: one row per partition in the table `_scrapesync_partitions` of the provider's
  dataset, loaded in the same load package as the rows it describes (`watermark_rows`,
  `with_partition_hints`) and read back from the destination when the next extract starts
  (`read_watermarks`). A row per partition, not dlt's pipeline state (one blob per pipeline,
  the last writer wins), is what lets several shard workers load one dataset at once and lets
  the number of shards change without losing a partition's place.

The shard setting is text `"i/N"` (0-based: `0/4` .. `3/4`), the same in config
(`sources.<provider>.shard`), env (`SOURCES__<PROVIDER>__SHARD`) and the command line
(`scrapesync sync <provider> --shard i/N`); docs/scale-out.md explains how shards are
assigned and why changing N loses no state.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import dlt
import pyarrow as pa
from dlt.common import logger
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.destinations.exceptions import DatabaseUndefinedRelation

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
                f"`{setting}` = {text!r} is not a shard: write `i/N` with 0 <= i < N <= "
                f"{MAX_SHARDS} (shards are 0-based)"
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


# -- fan-in: many partitions' pages, one consumer ------------------------------------------------


class PartitionEnd:
    """The marker `fan_in` hands over after the last page of a partition."""

    def __repr__(self) -> str:
        return "PARTITION_END"


PARTITION_END: Final = PartitionEnd()
_FINISHED = object()


class _StoppedError(Exception):
    """The consumer went away: a worker drops its partition."""


def fan_in(
    fetch: Callable[[T], Iterable[R]], items: Iterable[T], workers: int, buffer: int | None = None
) -> Generator[tuple[T, R | PartitionEnd], None, None]:
    """`(item, page)` for every page `fetch(item)` yields, `workers` items at a time, then
    `(item, PARTITION_END)` once that item has no more pages.

    Pages of one item arrive in their order; pages of different items interleave. At most
    `buffer` pages (default: `workers`) wait for the consumer, plus one page per worker
    waiting to get in: memory is bounded however many items or pages there are. The first
    error of any item is raised here at once; closing this generator (or an error) stops
    every worker at its next page (a request already sent still finishes).
    """
    if workers < 1:
        raise ValueError("fan_in: workers must be >= 1")
    pages: queue.Queue[Any] = queue.Queue(maxsize=buffer or workers)
    stop = threading.Event()

    def offer(entry: Any) -> None:
        while not stop.is_set():
            try:
                pages.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _StoppedError

    def run(item: T) -> None:
        try:
            for page in fetch(item):
                offer((item, page))
            offer((item, PARTITION_END))
        except _StoppedError:
            raise
        except BaseException as exc:
            offer(exc)  # the consumer raises it now, not after the other items finish
            raise

    def feed() -> None:
        try:
            for _ in map_bounded(run, items, workers):
                pass
            offer(_FINISHED)
        except _StoppedError:
            return
        except BaseException as exc:  # already offered by `run`; offered again is harmless
            try:
                offer(exc)
            except _StoppedError:
                return

    feeder = threading.Thread(target=feed, name="scrapesync-fan-in", daemon=True)
    feeder.start()
    try:
        while (entry := pages.get()) is not _FINISHED:
            if isinstance(entry, BaseException):
                raise entry
            yield entry
    finally:
        stop.set()
        feeder.join(timeout=30)


# -- watermarks: one row per partition in the destination ----------------------------------------

PARTITIONS_TABLE: Final = "_scrapesync_partitions"
PARTITION_KEY: Final = ("resource", "partition")
PARTITIONS_SCHEMA: Final = pa.schema(
    [
        pa.field("resource", pa.string(), nullable=False),
        pa.field("partition", pa.string(), nullable=False),
        # the newest cursor value loaded, ISO 8601 UTC text (`...Z`): portable and exact
        pa.field("watermark", pa.string()),
        # the watermark this load started from: what stays true if the load never completes
        pa.field("previous_watermark", pa.string()),
        pa.field("rows", pa.int64()),
        # dlt's own load id column (which dlt does not add to Arrow rows by itself): the load
        # that wrote the row, and when (a load id is its creation time)
        pa.field("_dlt_load_id", pa.string()),
    ]
)
PARTITIONS_HINTS: Final[dict[str, Any]] = {
    "table_name": PARTITIONS_TABLE,
    "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
    "primary_key": PARTITION_KEY,
}


@dataclass(frozen=True)
class PartitionMark:
    """What one load read of one partition: its new watermark and where it started."""

    partition: str
    watermark: str
    previous: str | None
    rows: int


def watermark_rows(resource: str, marks: Iterable[PartitionMark], load_id: str) -> pa.Table:
    """The `_scrapesync_partitions` rows of `marks` (one per partition)."""
    marks = list(marks)
    return pa.table(
        {
            "resource": [resource] * len(marks),
            "partition": [m.partition for m in marks],
            "watermark": [m.watermark for m in marks],
            "previous_watermark": [m.previous for m in marks],
            "rows": [m.rows for m in marks],
            "_dlt_load_id": [load_id] * len(marks),
        },
        schema=PARTITIONS_SCHEMA,
    )


def with_partition_hints(rows: pa.Table) -> Any:
    """`rows` routed to `_scrapesync_partitions`, merged on (resource, partition)."""
    return dlt.mark.with_hints(
        rows, dlt.mark.make_hints(**PARTITIONS_HINTS), create_table_variant=True
    )


WATERMARKS_SQL = """
SELECT p.{partition}, p.{load_id}, CASE WHEN EXISTS (
    SELECT 1 FROM {loads} AS l WHERE l.load_id = p.{load_id} AND l.status = 0
) THEN p.{watermark} ELSE p.{previous} END
FROM {partitions} AS p WHERE p.{resource} = {name}
"""
# DuckDB's message when another process holds the file; the load that holds it ends soon
_FILE_LOCKED = "Could not set lock on file"
_LOCK_WAIT_S = 120.0


def read_watermarks(resource: str) -> dict[str, str]:
    """Partition -> watermark (ISO text) of `resource`, from the destination of the running
    pipeline, in one query. No pipeline, no destination, no table yet: no watermarks.

    A watermark counts only once the load that wrote it completed (dlt records a load in
    `_dlt_loads` after all its tables are in, the rule dlt applies to its own state): if a
    worker died with its load half done, the row's `previous_watermark` is used instead, so
    the rows that load may have lost are read again.
    """
    context = Container()[PipelineContext]
    if not context.is_active() or _refreshed():
        return {}
    pipeline = context.pipeline()
    if pipeline.destination is None:
        return {}
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            return _query_watermarks(pipeline, resource)
        except Exception as exc:
            if _is_missing(exc):  # no table yet: a first sync
                return {}
            if _FILE_LOCKED not in str(exc) or time.monotonic() > deadline:
                raise
            logger.info(f"{PARTITIONS_TABLE}: destination busy, waiting to read watermarks")
            time.sleep(1.0)


def _refreshed() -> bool:
    """Whether this load drops or truncates the partitions table (a full refresh: dlt drops
    the tables at load time, so the rows are still there while the source extracts)."""
    try:
        package: Mapping[str, Any] = dlt.current.load_package_state().get("state") or {}
    except Exception:  # no load package: not inside an extract
        return False
    cleared = [*(package.get("dropped_tables") or []), *(package.get("truncated_tables") or [])]
    return any(table.get("name") == PARTITIONS_TABLE for table in cleared)


def _is_missing(exc: BaseException) -> bool:
    """A table that does not exist: SQL destinations say so with dlt's undefined-relation
    error, the filesystem destination's views with a missing file, maybe wrapped."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (DatabaseUndefinedRelation, FileNotFoundError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _query_watermarks(pipeline: Any, resource: str) -> dict[str, str]:
    naming = dlt.current.source_schema().naming
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return {}

        def column(name: str) -> str:
            return str(client.escape_column_name(naming.normalize_identifier(name)))

        sql = WATERMARKS_SQL.format(
            partitions=client.make_qualified_table_name(
                naming.normalize_table_identifier(PARTITIONS_TABLE)
            ),
            loads=client.make_qualified_table_name(pipeline.default_schema.loads_table_name)
            if pipeline.default_schema_name
            else client.make_qualified_table_name("_dlt_loads"),
            partition=column("partition"),
            load_id=column("_dlt_load_id"),
            watermark=column("watermark"),
            previous=column("previous_watermark"),
            resource=column("resource"),
            name=_literal(resource),
        )
        rows = client.execute_sql(sql) or []
    # one row per partition where the table merges; where it is an append-only log (the
    # filesystem destination cannot merge) the row of the newest load speaks for the partition
    newest: dict[str, tuple[str, Any]] = {}
    for partition, load_id, mark in rows:
        if str(partition) not in newest or str(load_id) > newest[str(partition)][0]:
            newest[str(partition)] = (str(load_id), mark)
    return {partition: str(mark) for partition, (_, mark) in newest.items() if mark is not None}


def legacy_watermarks(resources: Mapping[str, Any], prefix: str, cursor: str) -> dict[str, Any]:
    """Partition -> `last_value` of the per-partition dlt incrementals an older release kept
    in the source state (resource `<prefix><partition>`, incremental `cursor`): where a
    partition has no row yet, its sync continues from there instead of reading everything."""
    found: dict[str, Any] = {}
    for name, state in resources.items():
        if not name.startswith(prefix) or not isinstance(state, Mapping):
            continue
        value = state.get("incremental", {}).get(cursor, {}).get("last_value")
        if value is not None:
            found[name[len(prefix) :]] = value
    return found


# -- upkeep: which loads had their after-load SQL ------------------------------------------------

UPKEEP_TABLE: Final = "_scrapesync_upkeep"


def pending_upkeep(
    client: Any, pipeline: Any, resource: str, this_sync: Iterable[str]
) -> list[str]:
    """Load ids whose after-load SQL for `resource` has not run: this sync's loads, and any
    completed load since upkeep was first recorded that has no `_scrapesync_upkeep` row (a
    process that died between its load and its upkeep; another shard worker's load that is
    being upkept right now is picked up too, harmlessly: the upkeep SQL is idempotent)."""
    this_sync = sorted(this_sync)
    table = _ensure_upkeep_table(client)
    name = _literal(resource)
    floor = client.execute_sql(f"SELECT min(_dlt_load_id) FROM {table} WHERE resource = {name}")
    start = floor[0][0] if floor and floor[0][0] is not None else None
    start = start if start is not None else (this_sync[0] if this_sync else None)
    if start is None:
        return []
    loads = client.make_qualified_table_name(pipeline.default_schema.loads_table_name)
    rows = client.execute_sql(
        f"SELECT l.load_id FROM {loads} AS l WHERE l.status = 0 "
        f"AND l.schema_name = {_literal(pipeline.default_schema_name)} "
        f"AND l.load_id >= {_literal(start)} AND NOT EXISTS ("
        f"SELECT 1 FROM {table} AS u WHERE u.resource = {name} AND u._dlt_load_id = l.load_id)"
    )
    return sorted({str(row[0]) for row in rows or []} | set(this_sync))


def mark_upkept(client: Any, resource: str, load_ids: Iterable[str]) -> None:
    """Record that the after-load SQL of `resource` ran for `load_ids`."""
    table = client.make_qualified_table_name(UPKEEP_TABLE)
    values = ", ".join(f"({_literal(resource)}, {_literal(load_id)})" for load_id in load_ids)
    if values:
        client.execute_sql(f"INSERT INTO {table} (resource, _dlt_load_id) VALUES {values}")


def _ensure_upkeep_table(client: Any) -> str:
    table = str(client.make_qualified_table_name(UPKEEP_TABLE))
    try:
        client.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(resource TEXT NOT NULL, _dlt_load_id TEXT NOT NULL)"
        )
    except Exception:
        # two workers creating it at once: PostgreSQL lets one of them fail; it exists now
        client.execute_sql(f"SELECT 1 FROM {table} WHERE 1 = 0")
    return table


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"
