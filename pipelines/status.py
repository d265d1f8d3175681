"""`scrapesync status`: the health of every synced provider, from the destination's own tables.

Reads `scrapesync.sync_runs`, `sync_checks` and `scrape_runs` (written by every sync, see
`pipelines/metrics.py`), so it shows what the warehouse holds, from any machine that can reach
it. Per provider and table: last sync and its outcome, last successful sync, lag (now - newest
record), watermark, last error, the latest completeness checks, and the runs still open in
`scrape_runs` with the age of the oldest against the provider's result retention, where it
states one (`Provider.retention_hours`).

Exit code: 0 healthy; 1 when a provider's last sync failed, its last successful sync is older
than `max_age_hours`, or a completeness check of its last sync found a shortfall; 2 when the
destination holds no sync record at all; 75 when a sync held the DuckDB file for the whole
wait (try again).

It only reads, through a read-only connection (a read-only DuckDB file, a PostgreSQL session of
read-only transactions), so it never changes the destination and runs while syncs do. A DuckDB
file is one process's at a time while that process writes: status waits for it (bounded), then
says that a sync holds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

import dlt
import pendulum

from scrapesync.pipelines import registry
from scrapesync.pipelines.metrics import SYNC_CHECKS, SYNC_RUNS, WHOLE_SYNC
from scrapesync.pipelines.unified import TABLE as SCRAPE_RUNS
from scrapesync.pipelines.warehouse import (
    DestinationUnavailableError,
    Warehouse,
    hold_destination,
    open_warehouse,
)

DEFAULT_MAX_AGE_HOURS: Final = 24.0
DEFAULT_WAIT_S: Final = 30.0
EXIT_NO_RECORD: Final = 2
EXIT_BUSY: Final = 75


class StatusUnavailable(Exception):  # noqa: N818 (reads as `except StatusUnavailable`)
    """The destination could not be read; `exit_code` is what `scrapesync status` returns."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class ResourceStatus:
    resource: str
    last_sync_at: str | None
    outcome: str | None
    last_success_at: str | None
    lag_s: float | None
    watermark: str | None
    rows: int | None
    error: str | None


@dataclass
class ProviderStatus:
    provider: str
    healthy: bool = True
    problems: list[str] = field(default_factory=list)
    resources: list[ResourceStatus] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    open_jobs: list[dict[str, Any]] = field(default_factory=list)


def collect(
    pipeline: dlt.Pipeline, max_age_hours: float, wait_seconds: float = DEFAULT_WAIT_S
) -> list[ProviderStatus]:
    """Every provider with a sync record, newest facts first; [] when there is none.

    Raises:
        StatusUnavailable: a sync held the DuckDB file for `wait_seconds`, or it cannot be
            opened (a file that does not exist yet holds no record: [] instead).
    """
    try:
        with hold_destination(pipeline, wait_seconds):
            return _collect(pipeline, max_age_hours)
    except DestinationUnavailableError as exc:
        if exc.reason == "missing":
            return []
        if exc.reason == "busy":
            raise StatusUnavailable(
                f"a sync holds the destination file: {exc}; run status again later "
                "(or with a longer --wait)",
                EXIT_BUSY,
            ) from exc
        raise StatusUnavailable(f"destination unavailable: {exc}", 1) from exc


def _collect(pipeline: dlt.Pipeline, max_age_hours: float) -> list[ProviderStatus]:
    now = pendulum.now("UTC")
    with open_warehouse(pipeline, read_only=True) as warehouse:
        if not warehouse.exists(SYNC_RUNS):
            return []
        statuses: dict[str, ProviderStatus] = {}
        for row in _latest_runs(warehouse):
            status = statuses.setdefault(row.pop("provider"), ProviderStatus(""))
            status.resources.append(ResourceStatus(**row))
        for provider, status in statuses.items():
            status.provider = provider
            _judge(status, now, max_age_hours)
        if warehouse.exists(SYNC_CHECKS):
            _add_checks(warehouse, statuses)
        if warehouse.exists(SCRAPE_RUNS):
            _add_open_jobs(warehouse, statuses, now)
    return [statuses[name] for name in sorted(statuses)]


def _latest_runs(warehouse: Warehouse) -> list[dict[str, Any]]:
    runs = warehouse.table(SYNC_RUNS)
    sql = f"""
        SELECT x.provider, x.resource, x.finished_at, x.outcome, ok.last_ok, x.lag_s,
               x.watermark_after, x.rows_total, x.error
        FROM (SELECT provider, resource, finished_at, outcome, lag_s, watermark_after,
                     rows_total, error,
                     ROW_NUMBER() OVER (PARTITION BY provider, resource
                                        ORDER BY finished_at DESC) AS rn
              FROM {runs}) x
        JOIN (SELECT provider, resource,
                     MAX(CASE WHEN outcome <> 'failed' THEN finished_at END) AS last_ok
              FROM {runs} GROUP BY provider, resource) ok
          ON ok.provider = x.provider AND ok.resource = x.resource
        WHERE x.rn = 1
        ORDER BY x.provider, x.resource"""
    names = (
        *("provider", "resource", "last_sync_at", "outcome", "last_success_at", "lag_s"),
        *("watermark", "rows", "error"),
    )
    rows = []
    for values in warehouse.execute(sql):
        row = dict(zip(names, values, strict=True))
        row["last_sync_at"] = _iso(row["last_sync_at"])
        row["last_success_at"] = _iso(row["last_success_at"])
        rows.append(row)
    return rows


def _judge(status: ProviderStatus, now: pendulum.DateTime, max_age_hours: float) -> None:
    whole = next((r for r in status.resources if r.resource == WHOLE_SYNC), None)
    if whole is None:
        return
    if whole.outcome == "failed":
        status.problems.append(f"last sync failed: {(whole.error or '').splitlines()[0]}")
    if whole.last_success_at is None:
        status.problems.append("no successful sync yet")
    else:
        last = pendulum.instance(datetime.fromisoformat(whole.last_success_at))
        age_h = (now - last).total_seconds() / 3600
        if age_h > max_age_hours:
            status.problems.append(
                f"stale: last successful sync {age_h:.1f} h ago (threshold {max_age_hours:g} h)"
            )
    status.healthy = not status.problems


def _add_checks(warehouse: Warehouse, statuses: dict[str, ProviderStatus]) -> None:
    """The checks of each provider's latest sync that ran checks."""
    checks = warehouse.table(SYNC_CHECKS)
    sql = f"""
        SELECT provider, resource, check_name, expected, loaded, ok, detail, checked_at
        FROM {checks} c
        WHERE checked_at = (SELECT MAX(checked_at) FROM {checks} l
                            WHERE l.provider = c.provider)
        ORDER BY provider, resource, check_name"""
    for provider, resource, name, expected, loaded, ok, detail, at in warehouse.execute(sql):
        status = statuses.get(provider)
        if status is None:
            continue
        status.checks.append(
            {
                "resource": resource,
                "check": name,
                "expected": expected,
                "loaded": loaded,
                "ok": bool(ok),
                "detail": detail,
                "checked_at": _iso(at),
            }
        )
        if not ok:
            status.problems.append(f"incomplete {resource}: {detail}")
            status.healthy = False


def _add_open_jobs(
    warehouse: Warehouse, statuses: dict[str, ProviderStatus], now: pendulum.DateTime
) -> None:
    runs = warehouse.table(SCRAPE_RUNS)
    sql = f"""
        SELECT provider, source_table, COUNT(*), MIN(started_at)
        FROM {runs} WHERE state IN ('pending', 'running') AND NOT is_deleted
        GROUP BY provider, source_table ORDER BY provider, source_table"""
    for provider, table, count, oldest in warehouse.execute(sql):
        status = statuses.get(provider)
        if status is None:
            continue
        age_h = (now - pendulum.instance(oldest)).total_seconds() / 3600 if oldest else None
        described = registry.PROVIDERS.get(provider)
        retention = described.retention_hours.get(table) if described else None
        status.open_jobs.append(
            {
                "table": table,
                "open": int(count),
                "oldest_age_h": round(age_h, 2) if age_h is not None else None,
                "retention_h": retention,
                "beyond_retention": bool(retention and age_h and age_h > retention),
            }
        )


def _iso(value: Any) -> str | None:
    return pendulum.instance(value).in_timezone("UTC").isoformat() if value else None


def as_json(statuses: list[ProviderStatus]) -> dict[str, Any]:
    return {
        "healthy": all(s.healthy for s in statuses) and bool(statuses),
        "providers": [asdict(s) for s in statuses],
    }


def render(statuses: list[ProviderStatus]) -> str:
    """The terminal table: one block per provider."""
    if not statuses:
        return "no sync recorded in this destination yet (run `scrapesync sync`)"
    lines = []
    for status in statuses:
        verdict = "ok" if status.healthy else "PROBLEM"
        lines.append(f"{status.provider}: {verdict}")
        lines.append(
            f"  {'resource':<18}{'last sync':<22}{'outcome':<9}{'last success':<22}"
            f"{'lag':>10}  watermark"
        )
        for r in status.resources:
            lines.append(
                f"  {r.resource:<18}{_short(r.last_sync_at):<22}{r.outcome or '-':<9}"
                f"{_short(r.last_success_at):<22}{_duration(r.lag_s):>10}  {r.watermark or '-'}"
            )
        for job in status.open_jobs:
            retention = f", retention {job['retention_h']} h" if job["retention_h"] else ""
            lines.append(
                f"  open {job['table']}: {job['open']}, oldest {job['oldest_age_h']} h{retention}"
            )
        for check in status.checks:
            mark = "ok" if check["ok"] else "SHORT"
            lines.append(
                f"  check {check['resource']}.{check['check']}: {mark} ({check['detail']})"
            )
        lines.extend(f"  ! {problem}" for problem in status.problems)
    return "\n".join(lines)


def _short(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def exit_code(statuses: list[ProviderStatus]) -> int:
    if not statuses:
        return 2
    return 0 if all(s.healthy for s in statuses) else 1
