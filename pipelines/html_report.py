"""`scrapesync report --output FILE`: one self-contained HTML page on the health of the syncs.

Built from the destination alone, like `scrapesync status` (so it shows what the warehouse
holds, from any machine that reaches it):

* sync history per provider from `scrapesync.sync_runs`: rows changed, duration and data lag
  of each sync (the last `HISTORY_SYNCS`);
* scrape success per provider and day, and per group / scraper / datasource, from the dbt model
  `scrapesync_models.scrape_health` (`scrapesync transform`); when the model was not built the
  same figures are computed from `scrapesync.scrape_runs` and the page says so;
* open async jobs (`scrape_runs` rows still pending or running) against how long the provider
  keeps results (`Provider.retention_hours`);
* the completeness checks of each provider's last checked sync (`scrapesync.sync_checks`), with
  shortfalls highlighted, and earlier shortfalls.

The page needs no network when viewed: the charts are inline SVG (`pipelines/html_kit.py`), the
style and script are inline and a Content-Security-Policy allows exactly those two and nothing
else. Every value from the destination is escaped (`html_kit.el`) and bounded (row limits
below, text cut at `TEXT_LIMIT`). The SQL is plain (window functions, `percentile_cont ...
WITHIN GROUP`, `AT TIME ZONE`), which DuckDB and PostgreSQL both run.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.common import logger

from scrapesync.pipelines import registry
from scrapesync.pipelines.html_kit import (
    CSS,
    SCRIPT,
    Bar,
    Point,
    Safe,
    Stack,
    axis_times,
    csp_hash,
    el,
    fmt_duration,
    fmt_int,
    fmt_pct,
    fmt_time,
    line_chart,
    retention_bars,
    stacked_bars,
)
from scrapesync.pipelines.metrics import SYNC_CHECKS, SYNC_RUNS, WHOLE_SYNC
from scrapesync.pipelines.unified import TABLE as SCRAPE_RUNS
from scrapesync.pipelines.warehouse import Warehouse, open_warehouse

MODELS_DATASET: Final = "scrapesync_models"
HEALTH_MODEL: Final = "scrape_health"
HISTORY_SYNCS: Final = 200  # syncs per provider in the history charts
HEALTH_DAYS: Final = 60  # most recent days with runs, per provider
TOP_PARENTS: Final = 25  # groups / scrapers / datasources per provider, most runs first
SHORTFALLS: Final = 50  # earlier shortfalls listed
TEXT_LIMIT: Final = 300  # characters of any text value shown
OUTCOMES: Final = frozenset({"ok", "warning", "failed"})  # sync_runs.outcome


@dataclass
class SyncPoint:
    started_at: datetime
    outcome: str
    duration_s: float | None
    rows_changed: float
    lag_s: float | None


@dataclass
class HealthDay:
    day: date
    runs: int
    succeeded: int
    failed: int


@dataclass
class HealthParent:
    parent_id: str
    runs: int
    succeeded: int
    failed: int
    items_ok: float | None
    items_failed: float | None
    p50_s: float | None
    p95_s: float | None
    lag_s: float | None


@dataclass
class OpenJobs:
    provider: str
    table: str
    open: int
    oldest_started_at: datetime | None
    age_h: float | None
    retention_h: float | None


@dataclass
class Check:
    provider: str
    resource: str
    check: str
    expected: float | None
    loaded: float | None
    ok: bool
    detail: str
    checked_at: datetime | None


@dataclass
class ReportData:
    generated_at: datetime
    database: str
    providers: list[str]
    syncs: dict[str, list[SyncPoint]] = field(default_factory=dict)
    health_from_model: bool = False
    health_days: dict[str, list[HealthDay]] = field(default_factory=dict)
    health_parents: dict[str, list[HealthParent]] = field(default_factory=dict)
    open_jobs: list[OpenJobs] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    shortfalls: list[Check] = field(default_factory=list)


# -- reading the destination --------------------------------------------------------------


def build_report(
    destination: Any, output: str | os.PathLike[str], pipelines_dir: str | None = None
) -> bool:
    """Write the report of `destination` to `output`; False (nothing written) when the
    destination holds no sync record yet."""
    pipeline = dlt.pipeline(
        pipeline_name="scrapesync_report",
        destination=destination,
        dataset_name="scrapesync_report",
        pipelines_dir=pipelines_dir,  # type: ignore[arg-type]
    )
    data = collect(pipeline)
    if data is None:
        return False
    _write_atomically(Path(output), render(data))
    return True


def collect(pipeline: dlt.Pipeline) -> ReportData | None:
    """Everything the page shows, bounded; None when there is no `sync_runs` table."""
    with open_warehouse(pipeline) as warehouse:
        if not warehouse.exists(SYNC_RUNS):
            return None
        database = _database_name(warehouse, pipeline)
        syncs = _sync_history(warehouse)
        data = ReportData(datetime.now(UTC), database, _providers(syncs), syncs)
        _add_health(warehouse, data)
        if warehouse.exists(SCRAPE_RUNS):
            data.open_jobs = _open_jobs(warehouse, data.generated_at)
        if warehouse.exists(SYNC_CHECKS):
            data.checks, data.shortfalls = _checks(warehouse)
    return data


def _database_name(warehouse: Warehouse, pipeline: dlt.Pipeline) -> str:
    """The database's own name (a DuckDB file's name without extension), for the title."""
    try:
        return _text(warehouse.execute("SELECT current_database()")[0][0])
    except Exception:  # a warehouse without the function: its destination's name will do
        return str(pipeline.destination.destination_name)


def _providers(syncs: dict[str, list[SyncPoint]]) -> list[str]:
    """The registry's providers, then any other the destination holds (synced by a provider
    package that is not installed here)."""
    known = list(registry.PROVIDERS)
    return known + sorted(set(syncs) - set(known))


def _sync_history(warehouse: Warehouse) -> dict[str, list[SyncPoint]]:
    runs = warehouse.table(SYNC_RUNS)
    sql = f"""
        SELECT provider, started, finished, outcome, changed, lag FROM (
            SELECT provider, sync_id, MIN(started_at) AS started, MAX(finished_at) AS finished,
                   MAX(CASE WHEN resource = %s THEN outcome END) AS outcome,
                   SUM(CASE WHEN resource <> %s THEN COALESCE(rows_inserted, 0)
                       + COALESCE(rows_updated, 0) + COALESCE(rows_deleted, 0) END) AS changed,
                   MAX(lag_s) AS lag,
                   ROW_NUMBER() OVER (PARTITION BY provider
                                      ORDER BY MIN(started_at) DESC) AS rn
            FROM {runs} GROUP BY provider, sync_id) s
        WHERE rn <= %s AND started IS NOT NULL
        ORDER BY provider, started"""
    history: dict[str, list[SyncPoint]] = {}
    for provider, started, finished, outcome, changed, lag in warehouse.execute(
        sql, WHOLE_SYNC, WHOLE_SYNC, HISTORY_SYNCS
    ):
        duration = (finished - started).total_seconds() if finished and started else None
        history.setdefault(_text(provider), []).append(
            SyncPoint(
                started, _text(outcome or "unknown"), duration, _num(changed) or 0.0, _num(lag)
            )
        )
    return history


def _health_relation(warehouse: Warehouse) -> tuple[str | None, bool]:
    """The `scrape_health` model when it was built and reads, else the same columns computed
    from `scrape_runs` (None without it); and whether it is the model."""
    if warehouse.exists(HEALTH_MODEL, MODELS_DATASET):
        model = warehouse.table(HEALTH_MODEL, MODELS_DATASET)
        try:
            warehouse.execute(f"SELECT {HEALTH_COLUMNS} FROM {model} WHERE 1 = 0")
            return model, True
        except Exception as exc:  # a model from another version: the page still renders
            logger.warning(f"report: {MODELS_DATASET}.{HEALTH_MODEL} unreadable ({exc})")
    if not warehouse.exists(SCRAPE_RUNS):
        return None, False
    return f"({_health_from_runs(warehouse)})", False


ENDED_UNSUCCESSFUL: Final = "'failed', 'cancelled', 'expired'"
HEALTH_COLUMNS: Final = (
    "provider, parent_id, day, runs, succeeded, failed, success_rate, items_ok, items_failed, "
    "duration_p50_s, duration_p95_s, data_lag_s"
)


def _health_from_runs(warehouse: Warehouse) -> str:
    """`scrape_health`'s columns computed from `scrape_runs` the way the dbt model
    (transform/models/marts/scrape_health.sql) computes them: per provider, parent and UTC day
    of the run's start (a run not started yet: of the load that wrote it, a dlt load id being
    the load's Unix time); failed = failed, cancelled or expired; success rate = succeeded /
    ended runs; data lag = the worst, over the day's ended runs, of the time from a run's end
    to the end of its provider's first successful sync after it."""
    runs, syncs = warehouse.table(SCRAPE_RUNS), warehouse.table(SYNC_RUNS)
    return f"""
        WITH runs AS (
            SELECT provider, source_table, run_id, COALESCE(parent_id, '(none)') AS parent_id,
                   CAST((COALESCE(started_at, finished_at,
                                  to_timestamp(CAST(source_load_id AS DOUBLE PRECISION)))
                         AT TIME ZONE 'UTC') AS DATE) AS day,
                   state, finished_at, duration_s, items_ok, items_failed
            FROM {runs}),
        visible AS (
            SELECT r.provider, r.source_table, r.run_id, MIN(s.finished_at) AS visible_at
            FROM runs r JOIN {syncs} s
              ON s.provider = r.provider AND s.resource = '{WHOLE_SYNC}'
             AND s.outcome IN ('ok', 'warning') AND s.finished_at >= r.finished_at
            GROUP BY r.provider, r.source_table, r.run_id)
        SELECT r.provider, r.parent_id, r.day, COUNT(*) AS runs,
               SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
               SUM(CASE WHEN state IN ({ENDED_UNSUCCESSFUL}) THEN 1 ELSE 0 END) AS failed,
               CAST(SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS DOUBLE PRECISION)
                 / NULLIF(SUM(CASE WHEN state IN ('succeeded', {ENDED_UNSUCCESSFUL})
                                   THEN 1 ELSE 0 END), 0) AS success_rate,
               COALESCE(SUM(items_ok), 0) AS items_ok,
               COALESCE(SUM(items_failed), 0) AS items_failed,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS duration_p50_s,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS duration_p95_s,
               MAX(GREATEST(EXTRACT(EPOCH FROM v.visible_at)
                            - EXTRACT(EPOCH FROM r.finished_at), 0)) AS data_lag_s
        FROM runs r LEFT JOIN visible v
          ON v.provider = r.provider AND v.source_table = r.source_table AND v.run_id = r.run_id
        GROUP BY r.provider, r.parent_id, r.day"""


def _add_health(warehouse: Warehouse, data: ReportData) -> None:
    relation, data.health_from_model = _health_relation(warehouse)
    if relation is None:
        return
    recent = f"""
        SELECT h.*, DENSE_RANK() OVER (PARTITION BY provider ORDER BY day DESC) AS day_rank
        FROM {relation} h WHERE day IS NOT NULL"""
    days = f"""
        SELECT provider, day, SUM(runs), SUM(succeeded), SUM(failed)
        FROM ({recent}) r WHERE day_rank <= %s
        GROUP BY provider, day ORDER BY provider, day"""
    for provider, day, runs, succeeded, failed in warehouse.execute(days, HEALTH_DAYS):
        data.health_days.setdefault(_text(provider), []).append(
            HealthDay(_day(day), _int(runs), _int(succeeded), _int(failed))
        )
    parents = f"""
        SELECT * FROM (
            SELECT provider, parent_id, SUM(runs), SUM(succeeded), SUM(failed), SUM(items_ok),
                   SUM(items_failed), MAX(duration_p50_s), MAX(duration_p95_s),
                   MAX(data_lag_s),
                   ROW_NUMBER() OVER (PARTITION BY provider
                                      ORDER BY SUM(runs) DESC, parent_id) AS rn
            FROM ({recent}) r WHERE day_rank <= %s
            GROUP BY provider, parent_id) p
        WHERE rn <= %s ORDER BY provider, rn"""
    for row in warehouse.execute(parents, HEALTH_DAYS, TOP_PARENTS):
        provider, parent, runs, ok, failed, items_ok, items_failed, p50, p95, lag = row[:10]
        data.health_parents.setdefault(_text(provider), []).append(
            HealthParent(
                _text(parent) if parent is not None else "-",
                _int(runs),
                _int(ok),
                _int(failed),
                _num(items_ok),
                _num(items_failed),
                _num(p50),
                _num(p95),
                _num(lag),
            )
        )


def _open_jobs(warehouse: Warehouse, now: datetime) -> list[OpenJobs]:
    runs = warehouse.table(SCRAPE_RUNS)
    sql = f"""
        SELECT provider, source_table, COUNT(*), MIN(started_at)
        FROM {runs} WHERE state IN ('pending', 'running') AND NOT COALESCE(is_deleted, FALSE)
        GROUP BY provider, source_table ORDER BY provider, source_table"""
    found = []
    for provider, table, count, oldest in warehouse.execute(sql):
        described = registry.PROVIDERS.get(provider)
        retention = described.retention_hours.get(table) if described else None
        age_h = (now - _aware(oldest)).total_seconds() / 3600 if oldest else None
        found.append(
            OpenJobs(_text(provider), _text(table), _int(count), oldest, age_h, _num(retention))
        )
    return found


def _checks(warehouse: Warehouse) -> tuple[list[Check], list[Check]]:
    """The checks of each provider's last checked sync, and the latest earlier shortfalls."""
    checks = warehouse.table(SYNC_CHECKS)
    columns = "provider, resource, check_name, expected, loaded, ok, detail, checked_at"
    latest = f"""
        SELECT {columns} FROM {checks} c
        WHERE checked_at = (SELECT MAX(checked_at) FROM {checks} l
                            WHERE l.provider = c.provider)
        ORDER BY provider, resource, check_name"""
    earlier = f"""
        SELECT {columns} FROM {checks} c
        WHERE NOT COALESCE(ok, FALSE)
          AND checked_at < (SELECT MAX(checked_at) FROM {checks} l
                            WHERE l.provider = c.provider)
        ORDER BY checked_at DESC, provider LIMIT {SHORTFALLS}"""
    return (
        [_check(row) for row in warehouse.execute(latest)],
        [_check(row) for row in warehouse.execute(earlier)],
    )


def _check(row: tuple[Any, ...]) -> Check:
    provider, resource, name, expected, loaded, ok, detail, at = row
    return Check(
        _text(provider),
        _text(resource),
        _text(name),
        _num(expected),
        _num(loaded),
        bool(ok),
        _text(detail or ""),
        at,
    )


# -- values from outside: typed and bounded ------------------------------------------------


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int:
    number = _num(value)
    return round(number) if number is not None else 0


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return _aware(value).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- the page -----------------------------------------------------------------------------


class _Ids:
    """Unique element ids within one page (chart titles are referenced by id)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def __call__(self) -> str:
        return f"c{next(self._next)}"


def render(data: ReportData) -> str:
    """The whole page as one HTML document."""
    ids = _Ids()
    policy = (
        "default-src 'none'; "
        f"style-src {csp_hash(CSS)}; script-src {csp_hash(SCRIPT)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    head = el(
        "head",
        Safe('<meta charset="utf-8">'),
        Safe('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        Safe(f'<meta http-equiv="Content-Security-Policy" content="{policy}">'),
        Safe('<meta name="color-scheme" content="light dark">'),
        el("title", f"scrapesync report: {data.database}"),
        el("style", Safe(CSS)),
    )
    body = el(
        "body",
        el(
            "main",
            _top(data),
            _tiles(data),
            _nav(),
            _sync_section(data, ids),
            _health_section(data, ids),
            _open_section(data, ids),
            _checks_section(data),
            _footer(data),
        ),
        el("script", Safe(SCRIPT)),
    )
    return f'<!DOCTYPE html>\n<html lang="en">{head}{body}</html>\n'


def _top(data: ReportData) -> Safe:
    return el(
        "header",
        el(
            "div",
            el("h1", "scrapesync report"),
            el(
                "p",
                f"Database {data.database}, built {fmt_time(data.generated_at)}. All times UTC.",
                class_="muted",
            ),
        ),
        el("button", "Switch theme", type="button", id="theme-toggle", hidden=True),
        class_="top",
    )


def _tiles(data: ReportData) -> Safe:
    latest = {p: points[-1] for p, points in data.syncs.items() if points}
    failed = sorted(p for p, point in latest.items() if point.outcome == "failed")
    newest = max((point.started_at for point in latest.values()), default=None)
    days = [d for days in data.health_days.values() for d in days]
    ended = sum(d.succeeded + d.failed for d in days)
    rate = sum(d.succeeded for d in days) / ended if ended else None
    open_total = sum(job.open for job in data.open_jobs)
    past = sum(1 for job in data.open_jobs if _past_retention(job))
    short = sum(1 for check in data.checks if not check.ok)
    tiles = [
        ("Providers synced", f"{len(latest)} of {len(data.providers)}", False),
        ("Latest sync", fmt_time(newest), False),
        ("Last sync failed", ", ".join(failed) if failed else "none", bool(failed)),
        ("Scrape success rate", fmt_pct(rate), False),
        ("Open async jobs", f"{open_total} ({past} past retention)", past > 0),
        ("Completeness shortfalls", str(short), short > 0),
    ]
    return el(
        "section",
        [
            el(
                "div",
                el("span", label, class_="muted"),
                el("span", value, class_="value"),
                class_="tile bad" if bad else "tile",
            )
            for label, value, bad in tiles
        ],
        class_="tiles",
        aria_label="Summary",
    )


def _nav() -> Safe:
    links = [
        ("sync-history", "Sync history"),
        ("scrape-success", "Scrape success"),
        ("open-jobs", "Open async jobs"),
        ("completeness", "Completeness checks"),
    ]
    return el(
        "nav",
        el("ul", [el("li", el("a", text, href=f"#{anchor}")) for anchor, text in links]),
        aria_label="Sections",
    )


def _sync_section(data: ReportData, ids: _Ids) -> Safe:
    cards = [_sync_card(provider, data.syncs.get(provider, []), ids) for provider in data.providers]
    return _section(
        "sync-history",
        "Sync history",
        el(
            "p",
            f"Each provider's last {HISTORY_SYNCS} syncs at most (scrapesync.sync_runs): rows "
            "inserted, updated and deleted; how long the sync took; and the data lag (now minus "
            "the newest record's time, the stalest table) when it ran.",
            class_="muted",
        ),
        el("div", cards, class_="cards"),
    )


def _sync_card(provider: str, points: list[SyncPoint], ids: _Ids) -> Safe:
    if not points:
        return _card(
            provider, None, el("p", "No sync recorded in this destination.", class_="nodata")
        )
    last = points[-1]
    kind = last.outcome if last.outcome in OUTCOMES else "warning"
    badge = el("span", last.outcome, class_=f"badge {kind}")
    summary = el(
        "span", f"last sync {fmt_time(last.started_at)}, {len(points)} shown", class_="muted"
    )
    labels = axis_times([p.started_at for p in points])

    def series(values: list[float | None]) -> list[Point]:
        return [
            Point(label, value, fmt_time(p.started_at))
            for label, value, p in zip(labels, values, points, strict=True)
            if value is not None
        ]

    charts = [
        _figure(ids, f"{provider}: rows changed per sync",
                series([p.rows_changed for p in points]), fmt_int),
        _figure(ids, f"{provider}: sync duration",
                series([p.duration_s for p in points]), fmt_duration),
        _figure(ids, f"{provider}: data lag (stalest table)",
                series([p.lag_s for p in points]), fmt_duration),
    ]  # fmt: skip
    return _card(provider, [badge, summary], el("div", charts, class_="charts"))


def _figure(ids: _Ids, title: str, points: list[Point], fmt: Any) -> Safe:
    """A captioned line chart, or the caption and a note when there is no value to draw."""
    if not points:
        return el(
            "figure", el("figcaption", title), el("p", "No values recorded.", class_="nodata")
        )
    chart = line_chart(ids(), title, points, fmt, whole=fmt is fmt_int)
    return el("figure", el("figcaption", title), chart)


def _card(provider: str, extra: Iterable[Safe] | None, body: Safe | Iterable[Safe]) -> Safe:
    return el(
        "article",
        el("header", el("h3", provider), extra),
        body,
        class_="card",
        data_provider=provider,
    )


def _health_section(data: ReportData, ids: _Ids) -> Safe:
    if data.health_from_model:
        source = el(
            "p",
            f"From the dbt model {MODELS_DATASET}.{HEALTH_MODEL} (scrapesync transform).",
            class_="muted",
        )
    else:
        source = el(
            "p",
            f"The dbt model {MODELS_DATASET}.{HEALTH_MODEL} was not built in this destination "
            "(run scrapesync transform): these figures are computed from scrapesync.scrape_runs "
            "instead.",
            class_="note",
        )
    cards = [_health_card(provider, data, ids) for provider in data.providers]
    return _section(
        "scrape-success",
        "Scrape success",
        source,
        el(
            "p",
            f"Runs per day of the last {HEALTH_DAYS} days with runs. Failed = failed, cancelled "
            "or expired; success rate = succeeded / (succeeded + failed); open = still pending "
            "or running.",
            class_="muted",
        ),
        el("div", cards, class_="cards"),
    )


def _health_card(provider: str, data: ReportData, ids: _Ids) -> Safe:
    days = data.health_days.get(provider, [])
    if not days:
        described = registry.PROVIDERS.get(provider)
        why = (
            "This provider exposes no runs with a state and timing."
            if described is not None and not described.runs
            else "No runs recorded."
        )
        return _card(provider, None, el("p", why, class_="nodata"))
    succeeded = sum(d.succeeded for d in days)
    ended = succeeded + sum(d.failed for d in days)
    summary = el(
        "span",
        f"{sum(d.runs for d in days):,} runs, "
        f"success rate {fmt_pct(succeeded / ended if ended else None)}",
        class_="muted",
    )
    title = f"{provider}: runs per day"
    stacks = [
        Stack(d.day.isoformat(), d.succeeded, d.failed, max(d.runs - d.succeeded - d.failed, 0))
        for d in days
    ]
    chart = el(
        "figure",
        el("figcaption", title),
        stacked_bars(ids(), title, stacks),
        el(
            "ul",
            el("li", "succeeded", class_="ok"),
            el("li", "failed", class_="bad"),
            el("li", "open", class_="other"),
            class_="legend",
        ),
    )
    table = _parents_table(provider, data.health_parents.get(provider, []))
    return _card(provider, [summary], el("div", chart, table, class_="pair"))


def _parents_table(provider: str, parents: list[HealthParent]) -> Safe:
    head = [
        el("abbr", "parent", title="the group, scraper, datasource or batch of the runs"),
        "runs", "ok", "failed", "rate", "items ok", "items failed",
        el("abbr", "p50", title="median run duration (worst day)"),
        el("abbr", "p95", title="95th percentile run duration (worst day)"),
        el("abbr", "lag", title="data lag (worst day)"),
    ]  # fmt: skip
    rows = []
    for p in parents:
        ended = p.succeeded + p.failed
        cells = _num_cells(
            fmt_int(p.runs), fmt_int(p.succeeded), fmt_int(p.failed),
            fmt_pct(p.succeeded / ended if ended else None),
            fmt_int(p.items_ok), fmt_int(p.items_failed),
            fmt_duration(p.p50_s), fmt_duration(p.p95_s), fmt_duration(p.lag_s),
        )  # fmt: skip
        rows.append(el("tr", el("th", p.parent_id, scope="row", class_="text"), cells))
    caption = f"{provider}: the {TOP_PARENTS} busiest groups / scrapers / datasources"
    return _table(caption, head, rows, compact=True)


def _num_cells(*values: str) -> list[Safe]:
    return [el("td", value, class_="num") for value in values]


def _table(
    caption: str, head: Iterable[str | Safe], rows: list[Safe], compact: bool = False
) -> Safe:
    return el(
        "div",
        el(
            "table",
            el("caption", caption),
            el("thead", el("tr", [el("th", name, scope="col") for name in head])),
            el("tbody", rows),
            class_="compact" if compact else None,
        ),
        class_="table-wrap",
    )


def _past_retention(job: OpenJobs) -> bool:
    return bool(job.retention_h and job.age_h is not None and job.age_h > job.retention_h)


def _open_section(data: ReportData, ids: _Ids) -> Safe:
    intro = el(
        "p",
        "Jobs still pending or running in scrapesync.scrape_runs, per table. Where the provider "
        "states how long it keeps a job's results, the age of the oldest open job is drawn "
        "against it: past the line, its results may be gone before the job is collected.",
        class_="muted",
    )
    if not data.open_jobs:
        return _section(
            "open-jobs", "Open async jobs", intro, el("p", "No open jobs.", class_="nodata")
        )
    bars = [
        Bar(
            f"{job.provider}.{job.table}",
            job.age_h,
            job.retention_h,
            f"{job.open} open, oldest {fmt_duration(job.age_h * 3600)}"
            f" of {fmt_duration(job.retention_h * 3600)}",
        )
        for job in data.open_jobs
        if job.retention_h and job.age_h is not None
    ]
    title = "Oldest open job against retention"
    chart = (
        el("figure", el("figcaption", title), retention_bars(ids(), title, bars), class_="card")
        if bars
        else el("p", "No open job in a table with a stated retention.", class_="nodata")
    )
    rows = [
        el(
            "tr",
            el("td", job.provider),
            el("td", job.table),
            _num_cells(fmt_int(job.open)),
            el("td", fmt_time(job.oldest_started_at)),
            _num_cells(
                fmt_duration(job.age_h * 3600 if job.age_h is not None else None),
                fmt_duration(job.retention_h * 3600 if job.retention_h else None),
            ),
            el("td", _retention_badge(job)),
            class_="short" if _past_retention(job) else None,
        )
        for job in data.open_jobs
    ]
    head = ("provider", "table", "open", "oldest started", "oldest age", "retention", "state")
    table = _table("Open jobs per table", head, rows)
    return _section("open-jobs", "Open async jobs", intro, el("div", chart, table, class_="pair"))


def _retention_badge(job: OpenJobs) -> Safe:
    if not job.retention_h:
        return el("span", "no retention stated", class_="muted")
    if _past_retention(job):
        return el("span", "past retention", class_="badge failed")
    return el("span", "within retention", class_="badge ok")


def _checks_section(data: ReportData) -> Safe:
    intro = el(
        "p",
        "Totals each provider states, against the rows that landed (scrapesync.sync_checks), "
        "from each provider's last checked sync. A shortfall means rows are missing; nothing "
        "is deleted because of a check.",
        class_="muted",
    )
    if not data.checks:
        body: list[Safe] = [el("p", "No completeness check recorded.", class_="nodata")]
    else:
        body = [_checks_table("Latest checks", data.checks)]
    if data.shortfalls:
        body.append(_checks_table(f"Earlier shortfalls (latest {SHORTFALLS})", data.shortfalls))
    return _section("completeness", "Completeness checks", intro, body)


def _checks_table(caption: str, checks: list[Check]) -> Safe:
    head = (
        "provider",
        "table",
        "check",
        "expected",
        "loaded",
        "missing",
        "result",
        "detail",
        "checked at",
    )
    rows = []
    for c in checks:
        missing = c.expected - c.loaded if c.expected is not None and c.loaded is not None else None
        result = (
            el("span", "ok", class_="badge ok")
            if c.ok
            else el("span", "SHORT", class_="badge short")
        )
        rows.append(
            el(
                "tr",
                el("td", c.provider),
                el("td", c.resource),
                el("td", c.check),
                _num_cells(fmt_int(c.expected), fmt_int(c.loaded), fmt_int(missing)),
                el("td", result),
                el("td", c.detail, class_="text"),
                el("td", fmt_time(c.checked_at)),
                class_=None if c.ok else "short",
            )
        )
    return _table(caption, head, rows)


def _section(anchor: str, title: str, *body: object) -> Safe:
    return el(
        "section",
        el("h2", title, id=f"{anchor}-title"),
        *body,
        id=anchor,
        aria_labelledby=f"{anchor}-title",
    )


def _footer(data: ReportData) -> Safe:
    return el(
        "footer",
        f"Built by scrapesync report from dataset scrapesync ({SYNC_RUNS}, {SCRAPE_RUNS}, "
        f"{SYNC_CHECKS})"
        + (f" and {MODELS_DATASET}.{HEALTH_MODEL}" if data.health_from_model else "")
        + ". The page is self-contained: it loads nothing from the network.",
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` whole: a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; a report is shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
