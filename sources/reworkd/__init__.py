"""Reworkd: the scraped outputs of your scraping groups, kept equal to Reworkd's latest state.

API: `GET /v1/outputs/{group_id}` (shared/api-docs/000_7ed04c4312c3c512.txt, api-notes.md §1).
Every output is a change of a record identified by `key_hash` (`CREATE`, `UPDATE`, `DELETE`);
`created_after` returns everything "created or updated on or after" a timestamp, and pages
follow the integer `metadata.next_cursor`.

Tables (dataset `reworkd`):
* `outputs`: one row per live record, primary key (group_id, key_hash).
* `outputs__files`: one row per file of each live record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
import pendulum
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common import logger
from dlt.sources import DltResource
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

from scrapesync.sources.common.client import ProviderRESTClient, build_client
from scrapesync.sources.common.concurrency import prefetch
from scrapesync.sources.common.errors import ProviderSpec, malformed_item
from scrapesync.sources.common.paginators import GuardedCursorPaginator, log_pages
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.common.timeutil import iso_z, parse_datetime
from scrapesync.sources.reworkd.settings import (
    BASE_URL,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PAGE_SIZE,
    FILTER_PARAMS,
    MAX_PAGE_SIZE,
    OUTPUTS_PATH,
)
from scrapesync.sources.reworkd.transform import (
    MalformedOutputError,
    conform,
    history_table,
    page_tables,
)


def _fastapi_error(body: Any) -> str | None:
    """FastAPI's `{"detail": "..."}` or `{"detail": [{"loc": [...], "msg": ...}]}`."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail) if detail else None


SPEC = ProviderSpec(
    name="reworkd",
    parse_error=_fastapi_error,
    not_found_hints=(
        (
            r"/v1/outputs/(?P<group_id>[^/]+)",
            "group {group_id!r} is unknown or not visible to this API key: check "
            "`sources.reworkd.group_ids` (env SOURCES__REWORKD__GROUP_IDS)",
        ),
    ),
)

OUTPUTS_COLUMNS: dict[str, Any] = {
    "_deleted": {"data_type": "bool", "hard_delete": True},
    "_version": {"data_type": "text", "nullable": False, "dedup_sort": "desc"},
}
FILES_COLUMNS: dict[str, Any] = {"_deleted": {"data_type": "bool", "hard_delete": True}}
DELETE_INSERT: Any = {"disposition": "merge", "strategy": "delete-insert"}
OUTPUTS_KEY = ("group_id", "key_hash")


@dlt.source(name="reworkd")
def reworkd_source(
    api_key: str = dlt.secrets.value,
    group_ids: Sequence[str] = dlt.config.value,
    base_url: str = BASE_URL,
    start_date: str | None = None,
    lookback: int = DEFAULT_LOOKBACK_SECONDS,
    page_size: int = DEFAULT_PAGE_SIZE,
    job_id: str | None = None,
    url: str | None = None,
    country: str | None = None,
    region: str | None = None,
    history: bool = False,
    stats: RequestStats | None = None,
) -> list[DltResource]:
    """The Reworkd outputs of `group_ids`, one resource (and one watermark) per group.

    Args:
        api_key: Reworkd API token (sent as `Authorization: Bearer`).
        group_ids: scraping groups to sync; Reworkd has no public endpoint that lists them.
        base_url: API root; point it at the sandbox or a proxy.
        start_date: ISO date(-time); the first sync of a group reads changes from there on.
        lookback: seconds re-read before each group's watermark, for late-arriving changes.
        page_size: outputs per request (1..1000).
        job_id: only outputs of this root scraping job (API filter).
        url: only outputs of this exact source URL (API filter).
        country: only outputs of this country name, e.g. "United States" (API filter).
        region: only outputs of this ISO 3166-2 region, e.g. "US-CA" (API filter).
        history: also keep every version of every record in `outputs_history` (SCD2 validity
            columns `valid_from`/`valid_to`; a delete closes the last version).
        stats: request counters to fill (the CLI passes one to report requests per sync).
    """
    groups = _validated_groups(group_ids)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"reworkd: page_size={page_size} is outside 1..{MAX_PAGE_SIZE} "
            "(the API's documented `limit` range): fix `sources.reworkd.page_size`"
        )
    if lookback < 0:
        raise ValueError("reworkd: `sources.reworkd.lookback` must be >= 0 seconds")
    filters = {"job_id": job_id, "url": url, "country": country, "region": region}
    params = {name: value for name in FILTER_PARAMS if (value := filters[name])}
    client = build_client(
        SPEC,
        base_url,
        BearerTokenAuth(token=api_key),
        paginator=GuardedCursorPaginator("reworkd", "metadata.next_cursor", "cursor"),
        data_selector="items",
        stats=stats,
    )
    initial = parse_datetime(start_date) if start_date else None
    return [
        _group_resource(client, group, params, page_size, initial, lookback, history)
        for group in groups
    ]


def _validated_groups(group_ids: Sequence[str] | str) -> list[str]:
    groups = [group_ids] if isinstance(group_ids, str) else list(group_ids or [])
    groups = [group.strip() for group in groups if group and group.strip()]
    if not groups:
        raise ValueError(
            "reworkd: no scraping groups configured: set `sources.reworkd.group_ids` "
            "(e.g. env SOURCES__REWORKD__GROUP_IDS='[\"<group id>\"]'); the ids are on the "
            "groups page of the Reworkd app"
        )
    if len(set(groups)) != len(groups):
        raise ValueError(f"reworkd: `sources.reworkd.group_ids` repeats a group: {groups}")
    return groups


def _group_resource(
    client: ProviderRESTClient,
    group_id: str,
    params: dict[str, str],
    page_size: int,
    initial: pendulum.DateTime | None,
    lookback: int,
    history: bool,
) -> DltResource:
    """`outputs` of one group: its own resource, so each group keeps its own watermark."""
    cursor = dlt.sources.incremental[pendulum.DateTime](
        "update_date",
        initial_value=initial,
        # The lag re-reads `lookback` seconds before the watermark on every run; merge makes
        # the re-read rows idempotent. With no lag, dlt dedups rows at the boundary timestamp
        # by this change identity (not by the table key: a second change of one record in the
        # same second must not be dropped as a duplicate). `outputs__files` rows carry the
        # same columns, so a record's files are filtered exactly like the record.
        lag=lookback or None,
        primary_key=("_version", "value_hash"),
    )
    resource = dlt.resource(
        outputs,
        name=f"outputs_{group_id}",
        table_name="outputs",
        primary_key=OUTPUTS_KEY,
        write_disposition=DELETE_INSERT,
    )
    return resource(client, group_id, params, page_size, history, cursor)


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
    query = {**params, "limit": page_size}
    if update_date.start_value is not None:
        query["created_after"] = iso_z(update_date.start_value)
    logger.info(f"reworkd group {group_id}: reading changes since {query.get('created_after')}")
    load_id = dlt.current.load_package_state()["load_id"]
    pages = prefetch(client.paginate(OUTPUTS_PATH.format(group_id=group_id), params=query))
    metrics = dlt.current.resource_metrics()
    for page in log_pages("reworkd", f"group {group_id}", pages):
        if not page:
            continue
        outputs_page, files_page = _tables(page, group_id, load_id)
        outputs_page = conform(outputs_page, loaded_types("outputs"))
        deletes = pc.sum(outputs_page["_deleted"]).as_py() or 0
        metrics["deleted:outputs"] = metrics.get("deleted:outputs", 0) + deletes
        # column hints go with the table variant, not the resource, so that the other tables
        # this resource writes do not inherit `outputs`' hard-delete and dedup columns
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
                primary_key=("group_id", "key_hash", "_version", "file_index"),
                merge_key=("group_id", "key_hash"),
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
                    primary_key=("group_id", "key_hash", "_version"),
                ),
                create_table_variant=True,
            )


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
        path = OUTPUTS_PATH.format(group_id=group_id)
        raise malformed_item("reworkd", path, str(exc)) from None


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
