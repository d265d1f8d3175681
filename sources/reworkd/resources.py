"""The body of the `outputs` resource, its table hints, and the SQL upkeep after each load.

`__init__.py` wires one `outputs` resource per group; what one of them reads, how it turns
pages into tables and which hints each table carries is here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
import pendulum
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.concurrency import prefetch
from scrapesync.sources.common.errors import malformed_item
from scrapesync.sources.common.paginators import log_pages
from scrapesync.sources.common.timeutil import iso_z
from scrapesync.sources.reworkd.client import PROVIDER, outputs_path
from scrapesync.sources.reworkd.columns import ExtractTypes, MalformedOutputError, history_table
from scrapesync.sources.reworkd.settings import PAGE_SIZE_PARAM, WATERMARK_PARAM
from scrapesync.sources.reworkd.transform import page_tables

OUTPUTS_KEY = ("group_id", "key_hash")
DELETE_INSERT: Any = {"disposition": "merge", "strategy": "delete-insert"}
OUTPUTS_COLUMNS: dict[str, Any] = {
    "_deleted": {"data_type": "bool", "hard_delete": True},
    "_version": {"data_type": "text", "nullable": False, "dedup_sort": "desc"},
}
FILES_KEY = ("group_id", "key_hash", "_version", "file_index")
FILES_COLUMNS: dict[str, Any] = {"_deleted": {"data_type": "bool", "hard_delete": True}}
HISTORY_KEY = ("group_id", "key_hash", "_version")


def outputs(
    client: ProviderRESTClient,
    group_id: str,
    params: dict[str, str],
    page_size: int,
    history: bool,
    # a default instance is what makes dlt bind the incremental (annotations are strings here)
    update_date: dlt.sources.incremental[pendulum.DateTime] = dlt.sources.incremental(
        "update_date"
    ),
) -> Iterator[pa.Table]:
    """Scraped outputs of one group -> tables `outputs` and `outputs__files`.

    * Primary key: (group_id, key_hash): the same record in two groups is two rows.
    * Write disposition: merge (delete-insert). Within a sync, the latest change of a record
      wins: `_version` sorts changes by `update_date`, then `id` (`dedup_sort`).
    * Incremental cursor: `update_date`, one watermark per group, sent as `created_after`
      (inclusive on the API) minus `lookback` seconds; pages follow `metadata.next_cursor`.
    * Updates: an `UPDATE` replaces the row and its files.
    * Deletes: a `DELETE` change removes the row and its files (`_deleted` is a hard-delete
      hint); a delete for a record never loaded inserts nothing.
    * Late-arriving data: changes that show up with an `update_date` up to `lookback` seconds
      older than the watermark are re-read on the next sync; merge keeps them idempotent.
    * `outputs__files`: one row per file, merged on (group_id, key_hash); files of replaced or
      deleted records are removed (`post_load` removes files of superseded versions).
    * `outputs_history` (option `history`): primary key (group_id, key_hash, _version), merge;
      every change is a version row, so re-reads are idempotent; `valid_from` is the change's
      update_date and `post_load` sets `valid_to` to the next version's (NULL = current); a
      `DELETE` version closes at once, so a deleted record has no current version.
    """
    query: dict[str, Any] = {**params, PAGE_SIZE_PARAM: page_size}
    if update_date.start_value is not None:
        query[WATERMARK_PARAM] = iso_z(update_date.start_value)
    logger.info(f"reworkd group {group_id}: reading changes since {query.get(WATERMARK_PARAM)}")
    load_id = dlt.current.load_package_state()["load_id"]
    pages = prefetch(client.paginate(outputs_path(group_id), params=query))
    metrics = dlt.current.resource_metrics()
    for page in log_pages(PROVIDER, f"group {group_id}", pages):
        if not page:
            continue
        outputs_page, files_page = _tables(page, group_id, load_id)
        outputs_page = EXTRACT_TYPES.conform(outputs_page, load_id, loaded_types("outputs"))
        deletes = pc.sum(outputs_page["_deleted"]).as_py() or 0
        metrics["deleted:outputs"] = metrics.get("deleted:outputs", 0) + deletes
        # column hints go with the table variant, not the resource, so that the other tables
        # this resource writes do not inherit `outputs`' hard-delete and dedup columns
        # (docs/dlt-behaviours.md, "Column hints")
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


def _tables(page: list[Any], group_id: str, load_id: str) -> tuple[pa.Table, pa.Table]:
    """Refuse a page that breaks the docs (a missing field, a bad time, an unknown change)
    instead of loading half a record."""
    try:
        return page_tables(page, group_id, load_id)
    except MalformedOutputError as exc:
        raise malformed_item(PROVIDER, outputs_path(group_id), str(exc)) from None


FILES_CLEANUP_SQL = """
DELETE FROM {files} WHERE NOT EXISTS (
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
) WHERE valid_to IS NULL
""",
    "UPDATE {history} SET valid_to = valid_from WHERE valid_to IS NULL AND change_type = 'DELETE'",
)


def post_load(pipeline: dlt.Pipeline) -> int:
    """SQL upkeep after each load; both steps are idempotent and cover the whole table.

    * Files of record versions superseded within the same sync are removed: merge replaces all
      files of every record the sync touched, but when one sync reads two versions of a
      record, the older version's files arrive too.
    * `outputs_history.valid_to` is set from the next version of each record.

    A crash before this step only delays it to the next sync.
    """
    tables = pipeline.default_schema.tables
    with pipeline.sql_client() as client:
        if "outputs__files" in tables and "outputs" in tables:
            client.execute_sql(
                FILES_CLEANUP_SQL.format(
                    files=client.make_qualified_table_name("outputs__files"),
                    outputs=client.make_qualified_table_name("outputs"),
                )
            )
        if "outputs_history" in tables:
            history = client.make_qualified_table_name("outputs_history")
            for statement in HISTORY_VALIDITY_SQL:
                client.execute_sql(statement.format(history=history))
    return 0
