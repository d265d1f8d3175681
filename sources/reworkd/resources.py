"""The `outputs` resource (every group, one resource), its table hints, and the SQL upkeep
after each load.

`__init__.py` validates the options and builds one `outputs` resource for all groups; what it
reads, how groups are fetched concurrently, how pages become tables and where each group's
watermark is kept is here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dlt
import pendulum
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import malformed_item
from scrapesync.sources.common.partitions import (
    PartitionEnd,
    PartitionMark,
    fan_in,
    legacy_watermarks,
    mark_upkept,
    pending_upkeep,
    read_watermarks,
    watermark_rows,
    with_partition_hints,
)
from scrapesync.sources.common.timeutil import iso_z, parse_datetime
from scrapesync.sources.reworkd.client import PROVIDER, Page, outputs_pages, outputs_path
from scrapesync.sources.reworkd.columns import (
    INFERENCE_ERRORS,
    ExtractTypes,
    MalformedOutputError,
    history_table,
)
from scrapesync.sources.reworkd.settings import PAGE_BUFFER, PAGE_SIZE_PARAM, WATERMARK_PARAM
from scrapesync.sources.reworkd.transform import objects_in_lists, page_tables

RESOURCE = "outputs"
CURSOR = "update_date"
# earlier releases kept one dlt resource `outputs_<group>` per group, with its own incremental
LEGACY_PREFIX = "outputs_"
OUTPUTS_KEY = ("group_id", "key_hash")
DELETE_INSERT: Any = {"disposition": "merge", "strategy": "delete-insert"}
OUTPUTS_COLUMNS: dict[str, Any] = {
    "_deleted": {"data_type": "bool", "hard_delete": True},
    "_version": {"data_type": "text", "nullable": False, "dedup_sort": "desc"},
}
FILES_KEY = ("group_id", "key_hash", "_version", "file_index")
FILES_COLUMNS: dict[str, Any] = {"_deleted": {"data_type": "bool", "hard_delete": True}}
HISTORY_KEY = ("group_id", "key_hash", "_version")
# watermark rows are yielded in batches of this many groups (one small Arrow table each)
MARKS_BATCH = 1000
# outputs transformed (and handed to dlt) together (see `RawBatch`)
BATCH_ROWS = 5000


@dataclass(frozen=True)
class OutputsRead:
    """What one sync reads: which groups, with which request options."""

    client: ProviderRESTClient
    groups: tuple[str, ...]
    params: dict[str, str]
    page_size: int
    history: bool
    initial: pendulum.DateTime | None
    lookback: int
    concurrency: int


@dataclass
class GroupRead:
    """One group in this sync: where it starts and the newest change read so far."""

    group_id: str
    start: pendulum.DateTime | None  # the group's watermark before this sync (None: new)
    created_after: str | None  # what the request sends (watermark - lookback, or start_date)
    newest: pendulum.DateTime | None = None
    rows: int = 0

    def mark(self) -> PartitionMark | None:
        """The group's new watermark row, when this sync moved it forward."""
        if self.newest is None or (self.start is not None and self.newest <= self.start):
            return None
        previous = iso_z(self.start) if self.start is not None else None
        return PartitionMark(self.group_id, iso_z(self.newest), previous, self.rows)


def outputs(read: OutputsRead) -> Iterator[Any]:
    """Scraped outputs of every configured group -> tables `outputs` and `outputs__files`.

    * Primary key: (group_id, key_hash): the same record in two groups is two rows.
    * Write disposition: merge (delete-insert). Within a sync, the latest change of a record
      wins: `_version` sorts changes by `update_date`, then `id` (`dedup_sort`).
    * Incremental cursor: `update_date`, one watermark per group, kept as one row per group in
      `_scrapesync_partitions` (resource `outputs`), written in the same load as the rows and
      read back from the destination when the next sync starts (not dlt state: several shard
      workers load one dataset at once). A group's request sends `created_after` (inclusive
      on the API) = its watermark minus `lookback` seconds, or `start_date` for a new group;
      pages follow `metadata.next_cursor`. A group's watermark only moves to the newest
      `update_date` actually read. Groups are read `concurrency` at a time; their pages reach
      this generator through a bounded buffer (memory does not grow with groups or outputs).
    * Updates: an `UPDATE` replaces the row and its files.
    * Deletes: a `DELETE` change removes the row and its files (`_deleted` is a hard-delete
      hint); a delete for a record never loaded inserts nothing.
    * Late-arriving data: changes that show up with an `update_date` up to `lookback` seconds
      older than the watermark are re-read on the next sync; merge keeps them idempotent (also
      with `lookback = 0`: the rows at the watermark second come back and merge onto
      themselves).
    * `outputs__files`: one row per file, merged on (group_id, key_hash); files of replaced or
      deleted records are removed (`post_load` removes files of superseded versions).
    * `outputs_history` (option `history`): primary key (group_id, key_hash, _version), merge;
      every change is a version row, so re-reads are idempotent; `valid_from` is the change's
      update_date and `post_load` sets `valid_to` to the next version's (NULL = current); a
      `DELETE` version closes at once, so a deleted record has no current version.
    """
    load_id = dlt.current.load_package_state()["load_id"]
    groups = {group: _group_read(group, start, read) for group, start in _starts(read).items()}
    logger.info(
        f"reworkd: reading {len(groups)} group(s), {read.concurrency} at a time "
        f"({sum(g.start is None for g in groups.values())} without a watermark)"
    )
    batch = RawBatch()
    marks: list[PartitionMark] = []
    ended: list[str] = []  # groups read to the end whose last pages wait in `batch`

    def fetch(group: str) -> Iterator[Page]:
        return _group_pages(read, groups[group])

    def flush() -> Iterator[Any]:
        tables = batch.tables(load_id)
        if tables:
            yield from _written(tables, groups, load_id, read.history)
        marks.extend(mark for group in ended if (mark := groups[group].mark()) is not None)
        ended.clear()

    for group, page in fan_in(fetch, read.groups, read.concurrency, PAGE_BUFFER):
        if isinstance(page, PartitionEnd):
            ended.append(group)
        else:
            batch.add(group, page)
        if batch.rows >= BATCH_ROWS or len(ended) >= MARKS_BATCH:
            yield from flush()
        if len(marks) >= MARKS_BATCH:
            yield with_partition_hints(watermark_rows(RESOURCE, marks, load_id))
            marks.clear()
    yield from flush()
    if marks:
        yield with_partition_hints(watermark_rows(RESOURCE, marks, load_id))


class RawBatch:
    """Pages of several groups, turned into tables together.

    Per item it is handed with hints, dlt has a fixed cost (the item's table schema: ~5-25
    ms), and so has the transform per page (Arrow's type inference, its compute kernels), so
    1,000 groups of 50 outputs page by page would spend more time there than on the network.
    Pages are gathered up to `BATCH_ROWS` outputs and transformed as one page, each output
    keeping its own group (a `group_id` per row). Pages read into Arrow (`pages.py`) are cast
    to one struct type, the one Arrow infers over all their items, and concatenated; decoded
    pages are joined and typed together. Memory: one batch.
    """

    def __init__(self) -> None:
        self.pages: list[tuple[str, Page]] = []
        self.rows = 0

    def add(self, group: str, page: Page) -> None:
        self.pages.append((group, page))
        self.rows += len(page)

    def tables(self, load_id: str) -> list[tuple[pa.Table, pa.Table]]:
        pages, self.pages, self.rows = self.pages, [], 0
        read: list[tuple[str, pa.StructArray]] = []
        decoded: list[tuple[str, list[Any]]] = []
        for group, page in pages:
            if isinstance(page, pa.StructArray):
                read.append((group, page))
            else:
                decoded.append((group, page))
        return [
            *_batch_tables(read, _joined_structs(read), load_id),
            *_batch_tables(decoded, [item for _, page in decoded for item in page], load_id),
        ]


def _batch_tables(
    pages: Sequence[tuple[str, Page]], joined: Page | None, load_id: str
) -> list[tuple[pa.Table, pa.Table]]:
    """The tables of `pages` from their `joined` items, else (a malformed output, types that
    do not join) page by page."""
    if len(pages) > 1 and joined is not None:
        groups = pa.array([group for group, page in pages for _ in range(len(page))], pa.string())
        try:
            return [page_tables(joined, groups, load_id)]
        except MalformedOutputError:
            pass  # read each page alone below: the error then names its group
    return [_tables(page, group, load_id) for group, page in pages]


def _joined_structs(pages: list[tuple[str, pa.StructArray]]) -> pa.StructArray | None:
    """The struct arrays of `pages` as one, cast to the type Arrow would infer over all their
    items (`permissive`: an integer and a double field make a double one, as `pa.array`
    does); None when their types do not join (a field holds a number here, text there)."""
    kinds = list(dict.fromkeys(page.type for _, page in pages))
    if len(kinds) < 2:
        return pa.concat_arrays([page for _, page in pages]) if pages else None
    try:
        schemas = [pa.schema([("items", kind)]) for kind in kinds]
        kind = pa.unify_schemas(schemas, promote_options="permissive").field(0).type
        if objects_in_lists(kind):
            return None
        joined = [page if page.type == kind else page.cast(kind) for _, page in pages]
        return pa.concat_arrays(joined)
    except INFERENCE_ERRORS:
        return None


def _written(
    tables: list[tuple[pa.Table, pa.Table]],
    groups: dict[str, GroupRead],
    load_id: str,
    history: bool,
) -> Iterator[Any]:
    """Conform a batch's tables, note each group's newest change, yield them with hints: one
    table each for `outputs` and `outputs__files` when the conformed parts concatenate."""
    loaded = loaded_types("outputs")
    parts = [(EXTRACT_TYPES.conform(outputs, load_id, loaded), files) for outputs, files in tables]
    try:
        joined = [
            (
                pa.concat_tables([outputs for outputs, _ in parts], promote_options="default"),
                pa.concat_tables([files for _, files in parts]),
            )
        ]
    except INFERENCE_ERRORS:
        joined = parts
    for outputs_page, files_page in joined:
        _advance(groups, outputs_page)
        metrics = dlt.current.resource_metrics()
        deletes = pc.sum(outputs_page["_deleted"]).as_py() or 0
        metrics["deleted:outputs"] = metrics.get("deleted:outputs", 0) + deletes
        yield from _hinted(outputs_page, files_page, history)


def _starts(read: OutputsRead) -> dict[str, pendulum.DateTime | None]:
    """Each group's watermark: its `_scrapesync_partitions` row (one query for all groups),
    else the per-group dlt incremental an older release kept (so an upgrade does not read
    everything again), else none."""
    stored = read_watermarks(RESOURCE)
    missing = [group for group in read.groups if group not in stored]
    legacy: dict[str, Any] = {}
    if missing:
        resources = dlt.current.source_state().get("resources", {})
        legacy = legacy_watermarks(resources, LEGACY_PREFIX, CURSOR)
        if legacy:
            found = sum(group in legacy for group in missing)
            logger.info(f"reworkd: {found} group(s) continue from their pre-upgrade dlt state")
    return {group: _as_time(stored.get(group, legacy.get(group))) for group in read.groups}


def _as_time(value: Any) -> pendulum.DateTime | None:
    if value is None:
        return None
    if isinstance(value, pendulum.DateTime):
        return value.in_timezone("UTC")
    return parse_datetime(value if isinstance(value, str) else str(value))


def _group_read(group: str, start: pendulum.DateTime | None, read: OutputsRead) -> GroupRead:
    if start is not None:
        since: str | None = iso_z(start - timedelta(seconds=read.lookback))
    else:
        since = iso_z(read.initial) if read.initial is not None else None
    return GroupRead(group, start, since)


def _group_pages(read: OutputsRead, group: GroupRead) -> Iterator[Page]:
    """The pages of one group (runs on a worker thread)."""
    query: dict[str, Any] = {**read.params, PAGE_SIZE_PARAM: read.page_size}
    if group.created_after is not None:
        query[WATERMARK_PARAM] = group.created_after
    logger.debug(f"reworkd group {group.group_id}: reading changes since {group.created_after}")
    yield from outputs_pages(read.client, group.group_id, query)


def _advance(groups: dict[str, GroupRead], outputs_page: pa.Table) -> None:
    """Note each group's newest change in a batch (its watermark once the group is done)."""
    newest = outputs_page.group_by("group_id").aggregate(
        [("update_date", "max"), ("update_date", "count")]
    )
    for group, moment, rows in zip(
        newest["group_id"].to_pylist(),
        newest["update_date_max"].to_pylist(),
        newest["update_date_count"].to_pylist(),
        strict=True,
    ):
        state = groups[group]
        state.rows += rows
        if moment is not None:
            utc = pendulum.instance(moment).in_timezone("UTC")
            if state.newest is None or utc > state.newest:
                state.newest = utc


def _hinted(outputs_page: pa.Table, files_page: pa.Table, history: bool) -> Iterator[Any]:
    """The tables of a batch, each with its own hints.

    Column hints go with the table variant, not the resource, so that the other tables this
    resource writes do not inherit `outputs`' hard-delete and dedup columns
    (docs/dlt-behaviours.md, "Column hints")."""
    yield dlt.mark.with_hints(
        outputs_page,
        dlt.mark.make_hints(
            table_name="outputs",
            write_disposition=DELETE_INSERT,
            primary_key=OUTPUTS_KEY,
            columns=OUTPUTS_COLUMNS,
        ),
        create_table_variant=True,
    )
    yield dlt.mark.with_hints(
        files_page,
        dlt.mark.make_hints(
            table_name="outputs__files",
            write_disposition=DELETE_INSERT,
            primary_key=FILES_KEY,
            merge_key=OUTPUTS_KEY,
            columns=FILES_COLUMNS,
        ),
        create_table_variant=True,
    )
    if history:
        yield dlt.mark.with_hints(
            history_table(outputs_page),
            dlt.mark.make_hints(
                table_name="outputs_history",
                write_disposition=DELETE_INSERT,
                primary_key=HISTORY_KEY,
            ),
            create_table_variant=True,
        )


# one per process: every group's resource of a load writes the same `outputs` table
EXTRACT_TYPES = ExtractTypes()


def loaded_types(table: str) -> dict[str, str]:
    """Column name -> dlt data type of `table` as the schema knows it (earlier loads, pages)."""
    columns = dlt.current.source_schema().tables.get(table, {}).get("columns", {})
    return {
        name: str(column["data_type"]) for name, column in columns.items() if "data_type" in column
    }


def _tables(page: Page, group_id: str, load_id: str) -> tuple[pa.Table, pa.Table]:
    """Refuse a page that breaks the docs (a missing field, a bad time, an unknown change)
    instead of loading half a record."""
    try:
        return page_tables(page, group_id, load_id)
    except MalformedOutputError as exc:
        raise malformed_item(PROVIDER, outputs_path(group_id), str(exc)) from None


# Both statements touch only the records of `{loads}` (the load ids being upkept): the scan
# filters on `_dlt_load_id`, the correlated part runs for those rows only.
FILES_CLEANUP_SQL = """
DELETE FROM {files} WHERE {files}._dlt_load_id IN ({loads}) AND NOT EXISTS (
    SELECT 1 FROM {outputs} AS o
    WHERE o.group_id = {files}.group_id
      AND o.key_hash = {files}.key_hash
      AND o._version = {files}._version
)
"""


# valid_to of a version = valid_from of the next version of the record (NULL: current);
# a DELETE version is closed at once. Portable SQL (correlated subquery), idempotent.
HISTORY_VALIDITY_SQL = (
    """
UPDATE {history} SET valid_to = (
    SELECT min(n.valid_from) FROM {history} AS n
    WHERE n.group_id = {history}.group_id
      AND n.key_hash = {history}.key_hash
      AND n._version > {history}._version
) WHERE valid_to IS NULL AND EXISTS (
    SELECT 1 FROM {history} AS c
    WHERE c._dlt_load_id IN ({loads})
      AND c.group_id = {history}.group_id
      AND c.key_hash = {history}.key_hash
)
""",
    "UPDATE {history} SET valid_to = valid_from "
    "WHERE valid_to IS NULL AND change_type = 'DELETE' AND _dlt_load_id IN ({loads})",
)


def post_load(pipeline: dlt.Pipeline) -> int:
    """SQL upkeep after each load, scoped to the rows of the loads not upkept yet.

    * Files of record versions superseded within the same sync are removed: merge replaces all
      files of every record the sync touched, but when one sync reads two versions of a
      record, the older version's files arrive too.
    * `outputs_history.valid_to` is set from the next version of each record.

    Why the scope is enough: a stale file row can only be one a load just inserted (the merge
    on (group_id, key_hash) removed every older file row of each record it touched), and a
    version's `valid_to` only changes when a newer version of that record arrives, in some
    load. So the rows of the loads not upkept yet are all there is to fix, and the cost
    follows what those loads changed, not the table sizes. Which loads were upkept is kept in
    `_scrapesync_upkeep` (`sources/common/partitions.py`): a crash before this step leaves
    its loads un-upkept, and the next sync's upkeep covers them too.
    """
    tables = pipeline.default_schema.tables
    with pipeline.sql_client() as client:
        loads = pending_upkeep(client, pipeline, RESOURCE, _this_sync_loads(pipeline))
        if not loads:
            return 0
        ids = ", ".join(f"'{load_id}'" for load_id in loads)
        if "outputs__files" in tables and "outputs" in tables:
            client.execute_sql(
                FILES_CLEANUP_SQL.format(
                    files=client.make_qualified_table_name("outputs__files"),
                    outputs=client.make_qualified_table_name("outputs"),
                    loads=ids,
                )
            )
        if "outputs_history" in tables:
            history = client.make_qualified_table_name("outputs_history")
            for statement in HISTORY_VALIDITY_SQL:
                client.execute_sql(statement.format(history=history, loads=ids))
        mark_upkept(client, RESOURCE, loads)
    return 0


def _this_sync_loads(pipeline: dlt.Pipeline) -> list[str]:
    trace = pipeline.last_trace
    info = trace.last_load_info if trace is not None else None
    return list(info.loads_ids) if info is not None else []
