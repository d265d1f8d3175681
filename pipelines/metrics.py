"""`scrapesync.sync_runs` and `scrapesync.sync_checks`: what every sync did, written with the data.

After each provider sync (ok or failed) the runner calls `record_sync` once. It

* refreshes the provider's rows of `scrape_runs` (`pipelines.unified`);
* runs the completeness checks: totals the provider states in the rows just loaded
  (`Provider.checks`, e.g. a task's stated row count against the rows of its result file), and
  totals sources report while reading, as dlt resource metrics `expected:<table>` /
  `read:<table>` (the same mechanism as the runner's `deleted:<table>`); a shortfall is a
  warning in the sync summary and a row with `ok = false` in `sync_checks`. Nothing is ever
  deleted because of a check;
* writes one `sync_runs` row per table of the provider plus one row for the whole sync
  (`resource = '*'`), which carries the HTTP counters (they are counted per sync, not per
  table) and the outcome and error.

A failure to write these tables never fails the sync: it is logged and added to the warnings.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import dlt
import pendulum
from dlt.common import logger

from scrapesync.pipelines.report import SyncReport
from scrapesync.pipelines.unified import refresh_scrape_runs
from scrapesync.pipelines.warehouse import Columns, Warehouse, open_warehouse
from scrapesync.sources.common.provider import Provider, TotalCheck, merge_tables

SYNC_RUNS: Final = "sync_runs"
SYNC_CHECKS: Final = "sync_checks"
WHOLE_SYNC: Final = "*"
SYNC_RUNS_COLUMNS: Final[Columns] = (
    ("sync_id", "text"),
    ("provider", "text"),
    ("resource", "text"),
    ("started_at", "timestamp"),
    ("finished_at", "timestamp"),
    ("outcome", "text"),
    ("error", "text"),
    ("rows_inserted", "bigint"),
    ("rows_updated", "bigint"),
    ("rows_deleted", "bigint"),
    ("rows_total", "bigint"),
    ("requests", "bigint"),
    ("retries", "bigint"),
    ("throttled", "bigint"),
    ("bytes", "bigint"),
    ("watermark_before", "text"),
    ("watermark_after", "text"),
    ("newest_record_at", "timestamp"),
    ("lag_s", "double"),
    ("warnings", "bigint"),
)
SYNC_CHECKS_COLUMNS: Final[Columns] = (
    ("sync_id", "text"),
    ("provider", "text"),
    ("resource", "text"),
    ("check_name", "text"),
    ("checked_at", "timestamp"),
    ("expected", "bigint"),
    ("loaded", "bigint"),
    ("ok", "bool"),
    ("detail", "text"),
)
# resource-state keys that hold a provider's watermark (dlt incremental, or custom state)
WATERMARK_KEYS: Final = frozenset({"last_value", "watermark", "journal_version"})


@dataclass
class CheckResult:
    resource: str
    name: str
    expected: int | None
    loaded: int | None
    ok: bool
    detail: str


def record_sync(pipeline: dlt.Pipeline | None, provider: Provider, report: SyncReport) -> None:
    """Refresh `scrape_runs`, run the checks, write `sync_runs`/`sync_checks`; never raises."""
    if pipeline is None:
        return
    if pipeline.destination.destination_type.endswith(".filesystem"):
        # its SQL is read-only views over the files: the tables are written with SQL
        logger.info(f"{provider.name}: sync_runs / scrape_runs need a SQL destination; skipped")
        return
    try:
        _record(pipeline, provider, report)
    except Exception as exc:  # the sync's own outcome stands whatever happens here
        message = f"{provider.name}: sync_runs / scrape_runs not written: {exc}"
        logger.warning(message)
        report.warnings.append(message)


def _record(pipeline: dlt.Pipeline, provider: Provider, report: SyncReport) -> None:
    tables = _known_tables(pipeline)
    if not tables:
        return  # nothing ever loaded: no schema, no types to create tables with
    finished = pendulum.now("UTC")
    sync_id = uuid.uuid4().hex
    with open_warehouse(pipeline) as warehouse:
        refresh_scrape_runs(warehouse, provider.name, tables)
        checks = list(_sql_checks(warehouse, provider, tables)) if report.ok else []
        checks += metric_checks(pipeline) if report.ok else []
        for check in checks:
            if not check.ok:
                report.warnings.append(f"incomplete {check.resource}: {check.detail}")
        _write_checks(warehouse, sync_id, provider.name, finished, checks)
        _write_runs(warehouse, pipeline, sync_id, provider, report, finished, tables)


def _known_tables(pipeline: dlt.Pipeline) -> set[str]:
    if not pipeline.default_schema_name:
        return set()
    return set(pipeline.default_schema.data_table_names(seen_data_only=True))


def _sql_checks(
    warehouse: Warehouse, provider: Provider, tables: set[str]
) -> Iterator[CheckResult]:
    for check in provider.checks:
        if {check.parent, check.child} <= tables:
            yield _total_check(warehouse, provider.name, check)


def _total_check(warehouse: Warehouse, dataset: str, check: TotalCheck) -> CheckResult:
    parent = warehouse.table(check.parent, dataset)
    child = warehouse.table(check.child, dataset)
    col = warehouse.column
    join = f"c.{col(check.fk)} = p.{col(check.key)}" + (f" AND {check.also}" if check.also else "")
    per_run = (
        f"SELECT p.{col(check.key)} AS run_id, MAX(p.{col(check.expected)}) AS expected, "
        f"COUNT(c.{col(check.fk)}) AS loaded FROM {parent} p LEFT JOIN {child} c ON {join} "
        f"WHERE {check.where} GROUP BY p.{col(check.key)}"
    )
    short = "expected IS NOT NULL AND loaded < expected"
    row = warehouse.execute(
        f"SELECT COALESCE(SUM(expected), 0), COALESCE(SUM(loaded), 0), "
        f"SUM(CASE WHEN {short} THEN 1 ELSE 0 END), COUNT(*) FROM ({per_run}) x"
    )[0]
    expected, loaded, short_runs, runs = (int(v or 0) for v in row)
    detail = f"{runs} {check.parent} checked"
    if short_runs:
        examples = warehouse.execute(
            f"SELECT run_id, expected, loaded FROM ({per_run}) x WHERE {short} "
            "ORDER BY run_id LIMIT 3"
        )
        listed = ", ".join(f"{r[0]} has {r[2]} of {r[1]}" for r in examples)
        detail = (
            f"{short_runs} of {runs} {check.parent} have fewer {check.child} rows than the "
            f"provider states ({listed})"
        )
    return CheckResult(check.child, check.name, expected, loaded, short_runs == 0, detail)


def metric_checks(pipeline: dlt.Pipeline) -> list[CheckResult]:
    """Checks from the sources' `expected:<table>` / `read:<table>` resource metrics."""
    expected = custom_metrics(pipeline, "expected:")
    read = custom_metrics(pipeline, "read:")
    results = []
    for table, total in sorted(expected.items()):
        got = read.get(table, 0)
        ok = got >= total
        detail = f"the provider states {total}, the sync read {got}"
        results.append(CheckResult(table, "stated_total", total, got, ok, detail))
    return results


def custom_metrics(pipeline: dlt.Pipeline, prefix: str) -> dict[str, int]:
    """Per-table sums of the last extract's custom resource metrics named `<prefix><table>`."""
    trace = pipeline.last_trace
    extract = trace.last_extract_info if trace else None
    totals: dict[str, int] = {}
    for metrics_list in extract.metrics.values() if extract else []:
        for metrics in metrics_list:
            for resource in metrics.get("resource_metrics", {}).values():
                for key, value in (getattr(resource, "custom_metrics", None) or {}).items():
                    if key.startswith(prefix):
                        table = key.removeprefix(prefix)
                        totals[table] = totals.get(table, 0) + int(value)
    return totals


def _write_checks(
    warehouse: Warehouse,
    sync_id: str,
    provider: str,
    at: pendulum.DateTime,
    checks: Iterable[CheckResult],
) -> None:
    warehouse.ensure_table(SYNC_CHECKS, SYNC_CHECKS_COLUMNS)
    for c in checks:
        values = (sync_id, provider, c.resource, c.name, at, c.expected, c.loaded, c.ok, c.detail)
        _insert(warehouse, SYNC_CHECKS, SYNC_CHECKS_COLUMNS, values)


def _write_runs(
    warehouse: Warehouse,
    pipeline: dlt.Pipeline,
    sync_id: str,
    provider: Provider,
    report: SyncReport,
    finished: pendulum.DateTime,
    tables: set[str],
) -> None:
    warehouse.ensure_table(SYNC_RUNS, SYNC_RUNS_COLUMNS)
    started = finished.subtract(seconds=report.seconds)
    outcome = "failed" if not report.ok else ("warning" if report.warnings else "ok")
    stats = report.stats
    head = (sync_id, provider.name, WHOLE_SYNC, started, finished, outcome, report.error)
    counts = [sum(getattr(t, n) for t in report.tables) for n in ("inserted", "updated", "deleted")]
    http = (stats.requests, stats.retries, stats.throttled, stats.bytes)
    _insert(
        warehouse,
        SYNC_RUNS,
        SYNC_RUNS_COLUMNS,
        (*head, *counts, None, *http, None, None, None, None, len(report.warnings)),
    )
    resources = pipeline.state.get("sources", {}).get(provider.name, {}).get("resources", {})
    by_table = {t.table: t for t in report.tables}
    for table in merge_tables(pipeline.default_schema):
        if table not in tables:
            continue
        row = by_table.get(table)
        before = _previous_watermark(warehouse, provider.name, table)
        after = watermark(resources, table)
        newest = _newest(warehouse, provider, table)
        lag = (finished - pendulum.instance(newest)).total_seconds() if newest else None
        rows = (row.inserted, row.updated, row.deleted, row.total) if row else (None,) * 4
        values = (
            *head[:2], table, *head[3:], *rows, None, None, None, None,
            before, after, newest, lag, None,
        )  # fmt: skip
        _insert(warehouse, SYNC_RUNS, SYNC_RUNS_COLUMNS, values)


def watermark(resources: dict[str, Any], table: str) -> str | None:
    """The newest watermark a table's resources keep in dlt state (per-group resources too)."""
    found: list[str] = []
    for name, state in resources.items():
        if name == table or name.startswith(table + "_"):
            found.extend(_watermarks(state))
    return max(found) if found else None


def _watermarks(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in WATERMARK_KEYS and value is not None and not isinstance(value, dict | list):
                yield str(value)
            else:
                yield from _watermarks(value)


def _previous_watermark(warehouse: Warehouse, provider: str, table: str) -> str | None:
    rows = warehouse.execute(
        f"SELECT watermark_after FROM {warehouse.table(SYNC_RUNS)} "
        "WHERE provider = %s AND resource = %s ORDER BY finished_at DESC LIMIT 1",
        provider,
        table,
    )
    return rows[0][0] if rows else None


def _newest(warehouse: Warehouse, provider: Provider, table: str) -> Any:
    column = provider.freshness.get(table)
    if column is None:
        return None
    rows = warehouse.execute(
        f"SELECT MAX({warehouse.column(column)}) FROM {warehouse.table(table, provider.name)}"
    )
    return rows[0][0] if rows else None


def _insert(warehouse: Warehouse, table: str, columns: Columns, values: tuple[Any, ...]) -> None:
    names = ", ".join(warehouse.column(name) for name, _ in columns)
    marks = ", ".join(["%s"] * len(columns))
    warehouse.execute(f"INSERT INTO {warehouse.table(table)} ({names}) VALUES ({marks})", *values)
