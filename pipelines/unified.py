"""`scrapesync.scrape_runs`: every provider's runs, jobs, tasks and crawls in one table.

One row per provider run with its state normalised to `pending | running | succeeded | failed |
cancelled | expired` (the provider's own value beside it in `raw_state`; a raw state scrapesync
does not know yet maps to NULL rather than to a guess). The mapping is data in each provider's
package (`Provider.runs`, in `sources/<provider>/model.py`); the SQL that applies it is written
once, below.

Incremental by load id: each provider table's rows carry `_dlt_load_id`, and a merge rewrites a
changed row with the new load's id. `scrape_runs` keeps the load id each row came from
(`source_load_id`), so a refresh only re-maps rows loaded after the newest one it holds, whatever
sync loaded them (an interrupted sync's package finished later is picked up too). Two things
change provider rows without a new load id, and are handled apart: rows a provider removes
(merge hard deletes, `--full-refresh`) are dropped by a count check and an anti-join that runs
only when the counts differ; soft-delete flags set by a provider's `post_load` SQL are copied
by two UPDATEs over the (few) flagged rows.

A provider whose API exposes no run with a state and timing maps nothing (a row made up from
it would invent its state); a provider whose tables hold the same run twice maps one of them.
Each `model.py` says which of its tables are mapped and why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import dlt
from dlt.common import logger

from scrapesync.pipelines import registry
from scrapesync.pipelines.warehouse import Columns, Warehouse, open_warehouse
from scrapesync.sources.common.provider import RunMapping

TABLE: Final = "scrape_runs"
STATES: Final = ("pending", "running", "succeeded", "failed", "cancelled", "expired")
COLUMNS: Final[Columns] = (
    ("provider", "text"),
    ("source_table", "text"),
    ("run_id", "text"),
    ("parent_id", "text"),
    ("state", "text"),
    ("raw_state", "text"),
    ("started_at", "timestamp"),
    ("finished_at", "timestamp"),
    ("duration_s", "double"),
    ("items_ok", "bigint"),
    ("items_failed", "bigint"),
    ("is_deleted", "bool"),
    ("source_ref", "text"),
    ("source_load_id", "text"),
)


def mappings_for(provider: str) -> tuple[RunMapping, ...]:
    return registry.get(provider).runs if provider in registry.PROVIDERS else ()


def refresh_scrape_runs(warehouse: Warehouse, provider: str, tables: set[str]) -> int:
    """Bring the provider's rows of `scrape_runs` up to date; returns the rows (re)written.

    Args:
        warehouse: an open connection to the destination the provider loads into.
        provider: provider name.
        tables: the provider tables that exist (a table never loaded is skipped).
    """
    mappings = [m for m in mappings_for(provider) if m.table in tables]
    if not mappings:
        return 0
    warehouse.ensure_table(TABLE, COLUMNS)
    return sum(_refresh(warehouse, provider, mapping) for mapping in mappings)


def rebuild_scrape_runs(pipeline: dlt.Pipeline, provider: str, tables: set[str]) -> int:
    """`refresh_scrape_runs` on `pipeline`'s destination, in a connection of its own."""
    with open_warehouse(pipeline) as warehouse:
        return refresh_scrape_runs(warehouse, provider, tables)


def _refresh(warehouse: Warehouse, provider: str, mapping: RunMapping) -> int:
    runs = warehouse.table(TABLE)
    source = warehouse.table(mapping.table, dataset=provider)
    scope = "provider = %s AND source_table = %s"
    ids = (provider, mapping.table)
    newest = warehouse.execute(f"SELECT max(source_load_id) FROM {runs} WHERE {scope}", *ids)
    since = (newest[0][0] if newest else None) or ""
    key = _text(warehouse, mapping.key)
    with warehouse.client.begin_transaction():
        warehouse.execute(
            f"DELETE FROM {runs} WHERE {scope} AND run_id IN "
            f"(SELECT {key} FROM {source} WHERE _dlt_load_id > %s)",
            *ids,
            since,
        )
        warehouse.execute(_insert_sql(warehouse, provider, mapping, runs, source), since)
        _drop_vanished(warehouse, provider, mapping, runs, source, key)
        _copy_deleted_flags(warehouse, provider, mapping, runs, source, key)
    changed = warehouse.execute(
        f"SELECT count(*) FROM {runs} WHERE {scope} AND source_load_id > %s", *ids, since
    )
    count = int(changed[0][0]) if changed else 0
    logger.info(f"scrape_runs: {count} {provider}.{mapping.table} rows mapped")
    return count


def _insert_sql(
    warehouse: Warehouse, provider: str, mapping: RunMapping, runs: str, source: str
) -> str:
    """INSERT ... SELECT mapping the provider rows loaded after a watermark (`%s`)."""
    col = warehouse.column
    finished = _finished(warehouse, mapping)
    started = col(mapping.started_at) if mapping.started_at else "NULL"
    duration = (
        f"EXTRACT(EPOCH FROM {finished}) - EXTRACT(EPOCH FROM {started})"
        if mapping.started_at and mapping.finished_at
        else "NULL"
    )
    values = {
        "provider": _literal(provider),
        "source_table": _literal(mapping.table),
        "run_id": _text(warehouse, mapping.key),
        "parent_id": _text(warehouse, mapping.parent_id) if mapping.parent_id else "NULL",
        "state": _case(col(mapping.state), mapping.states),
        "raw_state": col(mapping.state),
        "started_at": started,
        "finished_at": finished,
        "duration_s": duration,
        "items_ok": col(mapping.items_ok) if mapping.items_ok else "NULL",
        "items_failed": col(mapping.items_failed) if mapping.items_failed else "NULL",
        "is_deleted": f"COALESCE({col(mapping.deleted)}, FALSE)" if mapping.deleted else "FALSE",
        "source_ref": _template(warehouse, mapping.source_ref),
        "source_load_id": "_dlt_load_id",
    }
    names = ", ".join(col(name) for name, _ in COLUMNS)
    select = ", ".join(values[name] for name, _ in COLUMNS)
    return f"INSERT INTO {runs} ({names}) SELECT {select} FROM {source} WHERE _dlt_load_id > %s"


def _finished(warehouse: Warehouse, mapping: RunMapping) -> str:
    if not mapping.finished_at:
        return "NULL"
    column = warehouse.column(mapping.finished_at)
    if mapping.finished_states is None:
        return column
    # compared upper-case, as the provider code compares them
    states = ", ".join(_literal(s.upper()) for s in sorted(mapping.finished_states))
    return f"CASE WHEN UPPER({warehouse.column(mapping.state)}) IN ({states}) THEN {column} END"


def _drop_vanished(
    warehouse: Warehouse, provider: str, mapping: RunMapping, runs: str, source: str, key: str
) -> None:
    """Drop rows whose provider row is gone (hard delete, full refresh), if the counts differ."""
    scope = "provider = %s AND source_table = %s"
    ids = (provider, mapping.table)
    mine = warehouse.execute(f"SELECT count(*) FROM {runs} WHERE {scope}", *ids)[0][0]
    theirs = warehouse.execute(f"SELECT count(*) FROM {source}")[0][0]
    if int(mine) != int(theirs):
        warehouse.execute(
            f"DELETE FROM {runs} WHERE {scope} AND run_id NOT IN (SELECT {key} FROM {source})",
            *ids,
        )


def _copy_deleted_flags(
    warehouse: Warehouse, provider: str, mapping: RunMapping, runs: str, source: str, key: str
) -> None:
    """Soft-delete flags a provider's post_load sets in place (no new load id) are copied."""
    if not mapping.deleted:
        return
    flag = warehouse.column(mapping.deleted)
    scope = "provider = %s AND source_table = %s"
    flagged = f"SELECT {key} FROM {source} WHERE {flag} = TRUE"
    for value, condition in (("TRUE", "IN"), ("FALSE", "NOT IN")):
        warehouse.execute(
            f"UPDATE {runs} SET is_deleted = {value} WHERE {scope} "
            f"AND is_deleted <> {value} AND run_id {condition} ({flagged})",
            provider,
            mapping.table,
        )


def _case(column: str, states: Mapping[str, str]) -> str:
    whens = " ".join(f"WHEN {_literal(raw)} THEN {_literal(norm)}" for raw, norm in states.items())
    return f"CASE {column} {whens} END"


def _text(warehouse: Warehouse, column: str) -> str:
    return f"CAST({warehouse.column(column)} AS {warehouse.text_type()})"


def _template(warehouse: Warehouse, template: str) -> str:
    """`https://x/{a}/y/{b}` as SQL concatenation (NULL when a part is NULL)."""
    parts = re.split(r"\{(\w+)\}", template)
    sql = [
        _text(warehouse, part) if index % 2 else _literal(part)
        for index, part in enumerate(parts)
        if part
    ]
    return " || ".join(sql)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
