"""Compare what a destination holds with what the sandbox says it must hold.

The comparison reads through the pipeline's own SQL client, so one check serves every
destination scrapesync loads into (DuckDB, PostgreSQL, the filesystem's Parquet files). It
compares identities, states and content hashes, not timestamps, whose types differ between
destinations.

The filesystem destination cannot merge: its tables are append-only change logs (every version
each sync read, delete markers included). `mismatches(..., change_log=True)` compares the
current state derived from such a log: per primary key the row of the latest load (Reworkd:
the latest `_version`), without rows marked `_deleted`.

Example:
    >>> problems = mismatches(pipeline, "reworkd", sandbox.providers["reworkd"])
    >>> assert not problems, problems
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dlt

from scrapesync.sandbox.base import ProviderAPI
from scrapesync.sources.common.provider import merge_tables


@dataclass(frozen=True)
class Expectation:
    """Rows `columns` of `table` (filtered by `where`) must be exactly `rows`, each once."""

    table: str
    columns: str
    rows: set[tuple[Any, ...]]
    where: str | None = None
    # how to derive the current rows from an append-only change log (default: latest per key)
    log_sql: str | None = None


OPENCX_JOB_COLUMNS = (
    "id",
    "datasource_id",
    "status",
    "total_pages",
    "completed_pages",
    "new_pages",
    "updated_pages",
    "removed_pages",
    "unchanged_pages",
    "error_message",
)


def _reworkd(api: Any) -> list[Expectation]:
    truth = api.truth()
    live = [
        (group, key, record) for group, records in truth.items() for key, record in records.items()
    ]
    return [
        Expectation(
            "outputs",
            "group_id, key_hash, value_hash",
            {(group, key, record["value_hash"]) for group, key, record in live},
        ),
        Expectation(
            "outputs__files",
            "group_id, key_hash, file_id",
            {(group, key, file["id"]) for group, key, record in live for file in record["files"]},
            # a record's files are those of its latest live version (their count can shrink)
            log_sql="SELECT DISTINCT f.group_id, f.key_hash, f.file_id FROM {outputs__files} f "
            "JOIN ({latest_outputs}) o ON o.group_id = f.group_id AND o.key_hash = f.key_hash "
            "AND o._version = f._version WHERE f.file_id IS NOT NULL",
        ),
    ]


def _scrapewise(api: Any) -> list[Expectation]:
    truth = api.truth()
    live = {
        (run_id, dto["state"], dto["successLinks"], dto["errorLinks"])
        for run_id, dto in truth["jobs"].items()
    }
    return [
        Expectation("jobs", "id, state, success_links, error_links", live, "NOT is_deleted"),
        Expectation("jobs", "id", {(run_id,) for run_id in truth["deleted_jobs"]}, "is_deleted"),
        Expectation("job_errors", "job_id, url", set(truth["job_errors"])),
        Expectation("rows", "job_id, _id", set(truth["rows"])),
    ]


def _opencx(api: Any) -> list[Expectation]:
    truth = api.truth()
    live = {(ds_id, ds["status"]) for ds_id, ds in truth["datasources"].items()}
    jobs = {tuple(job[name] for name in OPENCX_JOB_COLUMNS) for job in truth["jobs"].values()}
    return [
        Expectation("datasources", "id, status", live, "NOT is_deleted"),
        Expectation("datasources", "id", {(ds_id,) for ds_id in truth["deleted"]}, "is_deleted"),
        Expectation("crawl_jobs", ", ".join(OPENCX_JOB_COLUMNS), jobs),
    ]


def _outscraper(api: Any) -> list[Expectation]:
    truth = api.truth()
    removed = {(task_id,) for task_id in truth["removed"]}
    # requests are found through the finished listing: a Pending one is not known yet
    finished = {(rid, status) for rid, status in truth["requests"].items() if status != "Pending"}
    unsettled = ", ".join(f"'{task_id}'" for task_id in sorted(truth["unsettled_results"]))
    return [
        Expectation("tasks", "id, status", set(truth["tasks"].items()), "NOT removed"),
        Expectation("tasks", "id", removed, "removed"),
        Expectation("removed_tasks", "task_id", removed),
        Expectation(
            "task_results",
            "task_id, file_index, row_number, place_id",
            truth["task_results"],
            f"task_id NOT IN ({unsettled})" if unsettled else None,
        ),
        Expectation("requests", "id, status", finished),
        Expectation(
            "request_results",
            "request_id, query_index, row_index, place_id",
            truth["request_results"],
        ),
    ]


EXPECTATIONS: dict[str, Callable[[ProviderAPI], list[Expectation]]] = {
    "reworkd": _reworkd,
    "scrapewise": _scrapewise,
    "opencx": _opencx,
    "outscraper": _outscraper,
}


def read_rows(
    pipeline: dlt.Pipeline, table: str, columns: str, where: str | None = None
) -> list[tuple[Any, ...]]:
    """Rows of one table through the pipeline's SQL client ([] when the table does not exist)."""
    if not pipeline.default_schema_name or table not in pipeline.default_schema.data_table_names():
        return []
    with pipeline.sql_client() as client:
        name = client.make_qualified_table_name(table)
        sql = f"SELECT {columns} FROM {name}" + (f" WHERE {where}" if where else "")
        return [tuple(row) for row in client.execute_sql(sql) or []]


# A record's files are one entity across its versions: the oracle ranks versions by `_version`
# instead of keying on it as the merge does (a change log keeps every version's files).
ENTITY_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("reworkd", "outputs__files"): ("group_id", "key_hash", "file_index"),
}


def entity_key(pipeline: dlt.Pipeline, provider: str, table: str) -> tuple[str, ...]:
    """The columns that name one entity of `table`: its primary key, from the dlt schema."""
    return ENTITY_KEYS.get((provider, table)) or merge_tables(pipeline.default_schema)[table]


def latest_sql(pipeline: dlt.Pipeline, provider: str, table: str) -> str:
    """SQL of a change-log table's current rows: latest load (then `_version`) per key, live."""
    key = ", ".join(entity_key(pipeline, provider, table))
    columns = pipeline.default_schema.tables[table]["columns"]
    order = "_dlt_load_id DESC" + (", _version DESC" if "_version" in columns else "")
    live = "WHERE _rn = 1" + (" AND NOT coalesce(_deleted, false)" if "_deleted" in columns else "")
    with pipeline.sql_client() as client:
        name = client.make_qualified_table_name(table)
    ranked = f"SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS _rn FROM {name}"
    return f"SELECT * FROM ({ranked}) ranked {live}"


def read_log_rows(
    pipeline: dlt.Pipeline, provider: str, expected: Expectation
) -> list[tuple[Any, ...]]:
    """`expected`'s rows as derived from an append-only change log."""
    schema_tables: list[str] = (
        pipeline.default_schema.data_table_names() if pipeline.default_schema_name else []
    )
    if expected.table not in schema_tables:
        return []
    if expected.log_sql:
        with pipeline.sql_client() as client:
            names = {table: client.make_qualified_table_name(table) for table in schema_tables}
        names.update({f"latest_{t}": latest_sql(pipeline, provider, t) for t in schema_tables})
        sql = expected.log_sql.format(**names)
    else:
        latest = latest_sql(pipeline, provider, expected.table)
        where = f" WHERE {expected.where}" if expected.where else ""
        sql = f"SELECT {expected.columns} FROM ({latest}) current_rows{where}"
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]


def duplicate_keys(pipeline: dlt.Pipeline, provider: str) -> dict[str, int]:
    """Rows beyond the first per primary key, for each of the provider's merge tables."""
    found: dict[str, int] = {}
    if not pipeline.default_schema_name:
        return found
    for table in merge_tables(pipeline.default_schema):
        rows = read_rows(pipeline, table, ", ".join(entity_key(pipeline, provider, table)))
        extra = len(rows) - len(set(rows))
        if extra:
            found[table] = extra
    return found


def mismatches(
    pipeline: dlt.Pipeline, provider: str, api: ProviderAPI, change_log: bool = False
) -> list[str]:
    """Every way the destination differs from the sandbox's truth (empty: they are equal).

    Args:
        change_log: the tables are append-only logs (filesystem): compare their current state.
    """
    problems = [
        f"{table}: {extra} duplicate primary key row(s)"
        for table, extra in ({} if change_log else duplicate_keys(pipeline, provider)).items()
    ]
    if provider not in EXPECTATIONS:  # row counts only, from the sandbox's own expectation
        return problems + _count_mismatches(pipeline, api)
    for expected in EXPECTATIONS[provider](api):
        if change_log:
            rows = read_log_rows(pipeline, provider, expected)
        else:
            rows = read_rows(pipeline, expected.table, expected.columns, expected.where)
        actual = set(rows)
        label = f"{expected.table}[{expected.where or 'all'}]"
        if len(rows) != len(actual):
            problems.append(f"{label}: {len(rows) - len(actual)} duplicate row(s)")
        missing, unexpected = expected.rows - actual, actual - expected.rows
        if missing or unexpected:
            problems.append(
                f"{label}: {len(missing)} missing (e.g. {sorted(missing, key=repr)[:2]}), "
                f"{len(unexpected)} unexpected (e.g. {sorted(unexpected, key=repr)[:2]})"
            )
    return problems


def _count_mismatches(pipeline: dlt.Pipeline, api: ProviderAPI) -> list[str]:
    problems = []
    for table, expected in api.expected_rows().items():
        actual = len(read_rows(pipeline, table, "1"))
        if actual != expected:
            problems.append(f"{table}: {actual} rows, expected {expected}")
    return problems
