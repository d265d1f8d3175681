"""The bodies of open.cx's resources: `datasources` (with deletes) and `crawl_jobs` (incremental).

`__init__.py` wires them into the source with their hints; `post_load` flags the jobs of
deleted datasources after the load. How the API is read: docs/opencx.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
import pendulum
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.common.paginators import log_pages
from scrapesync.sources.common.partitions import map_bounded
from scrapesync.sources.common.timeutil import iso_z, parse_datetime
from scrapesync.sources.common.validation import check_times
from scrapesync.sources.opencx.client import (
    PROVIDER,
    endpoint_path,
    get_crawl_job,
    get_datasource,
    pages,
)
from scrapesync.sources.opencx.settings import (
    BATCH_ROWS,
    DELETED_KEPT,
    IDS_SETTING,
    JOB_TIME_FIELDS,
    UPDATED_AFTER_PARAM,
)
from scrapesync.sources.opencx.transform import (
    HistoryWalk,
    datasource_row,
    deleted_marker,
    job_row,
    updated_since,
)


def datasources(
    client: ProviderRESTClient,
    datasource_ids: list[str],
    list_params: dict[str, Any],
    concurrency: int = 1,
) -> Iterator[list[dict[str, Any]]]:
    """Website datasources -> table `datasources`.

    * Primary key: `id`.
    * Write disposition: merge (delete-insert): each sync rewrites the datasources it read.
    * Incremental: none, every sync reads every datasource (`GET /crawl`, then `GET /crawl/{id}`
      for `page_stats` and `active_crawl_job` when the list lacks them, `concurrency` at a
      time): their page statistics change without a documented change marker.
    * Updates: config, `status`, `last_crawl_*` and `page_stats__*` are replaced by the latest.
    * Deletes: ids seen before are kept in the resource state; one missing from a complete list
      is confirmed with `GET /crawl/{id}` (404) before its last row is written again with
      `is_deleted = true` and `deleted_at`; an interrupted list read marks nothing.
    * Late-arriving data: none to miss; a datasource absent from one list but found by its
      direct read is kept live.
    """
    state = dlt.current.resource_state("datasources")
    known: dict[str, dict[str, Any]] = state.setdefault("known", {})
    deleted: list[str] = state.setdefault("deleted", [])
    if datasource_ids:
        gone: list[str] = []
        yield from _read_configured(client, datasource_ids, known, deleted, gone, concurrency)
    else:
        gone = []
        listed: set[str] = set()
        listing = pages(client, "list_datasources", list_params)
        for page in log_pages(PROVIDER, "datasources", listing):
            rows, vanished = _details(client, page, concurrency)
            listed.update(item["id"] for item in page)
            gone += vanished
            yield from _remember(known, rows)
        unlisted = [ds_id for ds_id in known if ds_id not in listed and ds_id not in gone]
        rows, vanished = _details(client, [{"id": ds_id} for ds_id in unlisted], concurrency)
        gone += vanished
        yield from _remember(known, rows)
    yield from _mark_deleted(known, deleted, gone)
    _prune_deleted(deleted, datasource_ids)


def _prune_deleted(deleted: list[str], datasource_ids: list[str]) -> None:
    """Keep the deleted ids only as long as they can be asked for again: the configured ones
    (a 404 for them is a warning, not an error), else the newest `DELETED_KEPT`; the
    destination keeps every deleted datasource's row, so state does not grow with them."""
    configured = set(datasource_ids)
    deleted[:] = [i for i in deleted if i in configured] if configured else deleted[-DELETED_KEPT:]


def _remember(
    known: dict[str, dict[str, Any]], rows: list[dict[str, Any]]
) -> Iterator[list[dict[str, Any]]]:
    for row in rows:
        known[row["id"]] = row
    if rows:
        yield rows


def _mark_deleted(
    known: dict[str, dict[str, Any]], deleted: list[str], gone: list[str]
) -> Iterator[list[Any]]:
    now = pendulum.now("UTC")
    markers = [deleted_marker(known.pop(ds_id), now) for ds_id in gone if ds_id in known]
    deleted.extend(marker["id"] for marker in markers)
    if markers:
        logger.info(f"opencx: {len(markers)} datasource(s) deleted on open.cx: {gone[:20]}")
        metrics = dlt.current.resource_metrics()
        metrics["deleted:datasources"] = metrics.get("deleted:datasources", 0) + len(markers)
        yield markers


def _read_one(client: ProviderRESTClient, ds_id: str) -> dict[str, Any] | ProviderAPIError:
    """`GET /crawl/{id}` as a row; a 404 is returned, not raised (the caller decides what it
    means)."""
    try:
        return datasource_row(get_datasource(client, ds_id))
    except ProviderAPIError as exc:
        if exc.status != 404:
            raise
        return exc


def _details(
    client: ProviderRESTClient, items: list[dict[str, Any]], concurrency: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of listed datasources (detail read when stats are missing) and the ids now gone."""
    rows = [datasource_row(item) for item in items if "page_stats" in item]
    gone = []
    todo = [item["id"] for item in items if "page_stats" not in item]
    for ds_id, row in map_bounded(lambda ds_id: _read_one(client, ds_id), todo, concurrency):
        if isinstance(row, ProviderAPIError):
            gone.append(ds_id)  # deleted since it was listed, or since the last sync
        else:
            rows.append(row)
    return rows, gone


def _read_configured(
    client: ProviderRESTClient,
    datasource_ids: list[str],
    known: dict[str, Any],
    deleted: list[str],
    gone: list[str],
    concurrency: int,
) -> Iterator[list[dict[str, Any]]]:
    """The configured datasources, read `concurrency` at a time, yielded in batches (memory
    holds one batch, not every datasource)."""
    was_deleted = set(deleted)
    batch: list[dict[str, Any]] = []
    reads = map_bounded(lambda ds_id: _read_one(client, ds_id), datasource_ids, concurrency)
    for ds_id, row in reads:
        if not isinstance(row, ProviderAPIError):
            batch.append(row)
        elif ds_id in was_deleted:
            logger.warning(f"opencx: datasource {ds_id} was deleted; remove it from {IDS_SETTING}")
        elif ds_id in known:
            gone.append(ds_id)
        else:  # an id never seen: a configuration error (the hint names the setting)
            raise row
        if len(batch) >= BATCH_ROWS:
            yield from _remember(known, batch)
            batch = []
    yield from _remember(known, batch)


def crawl_jobs(
    items: list[dict[str, Any]] | dict[str, Any],
    client: ProviderRESTClient,
    start: pendulum.DateTime | None,
    lookback: int,
    list_params: dict[str, Any],
    concurrency: int = 1,
) -> Iterator[list[dict[str, Any]]]:
    """Crawl jobs of every synced datasource -> table `crawl_jobs`.

    * Primary key: `id`.
    * Write disposition: merge (delete-insert); within one sync the latest read of a job wins
      (`updated_at` is the dedup sort).
    * Incremental: `updated_at`, one watermark per datasource in the resource state. The
      history (`GET /crawl/{id}/crawls`, newest first) is read with `updated_after` =
      watermark - `lookback` and stops at the first page older than that (when the pages prove
      newest-first order); jobs not terminal at the last sync, and the datasource's
      `active_crawl_job`, are re-read with `GET /crawl/{id}/crawls/{jobId}` until they are
      `completed`, `failed` or `cancelled`, so their counters end final. Datasources are
      read `concurrency` at a time; each one's state entry is written by this thread only.
    * Updates: a job read again replaces its row (counters grow while `scraping`).
    * Deletes: jobs of a datasource deleted on open.cx get `is_deleted = true` after the load
      (`post_load`); a job that vanished alone (404 on re-read) stops being re-read.
    * Late-arriving data: jobs committed up to `lookback` seconds behind the watermark are read
      by the next sync; re-read rows merge, never duplicate.
    """
    state = dlt.current.resource_state("crawl_jobs").setdefault("datasources", {})
    live = []  # each with a copy of its state entry: workers never touch the state itself
    for datasource in items if isinstance(items, list) else [items]:
        if datasource["is_deleted"]:
            state.pop(datasource["id"], None)
        else:
            live.append((datasource, dict(state.get(datasource["id"], {}))))

    def read(todo: tuple[dict[str, Any], dict[str, Any]]) -> list[dict[str, Any]]:
        return _datasource_jobs(client, *todo, start, lookback, list_params)

    batch: list[dict[str, Any]] = []
    for (datasource, entry), rows in map_bounded(read, live, concurrency):
        state[datasource["id"]] = entry
        batch += rows
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _datasource_jobs(
    client: ProviderRESTClient,
    datasource: dict[str, Any],
    entry: dict[str, Any],
    start: pendulum.DateTime | None,
    lookback: int,
    list_params: dict[str, Any],
) -> list[dict[str, Any]]:
    """One datasource's new and re-read jobs; advances `entry` (watermark, open jobs)."""
    ds_id = datasource["id"]
    watermark = parse_datetime(entry.get("watermark")) or start
    cutoff = watermark.subtract(seconds=lookback) if watermark else None
    seen: dict[str, dict[str, Any]] = {}
    found: list[dict[str, Any]] = []
    try:
        for rows in _history(client, ds_id, cutoff, list_params):
            seen.update((row["id"], row) for row in rows)
            found += rows
    except ProviderAPIError as exc:
        if exc.status != 404:
            raise
        logger.warning(f"opencx: datasource {ds_id} vanished while syncing; next sync marks it")
        return found
    recheck = [*entry.get("open", []), datasource.get("active_crawl_job__id")]
    reread = _reread(client, ds_id, [job for job in dict.fromkeys(recheck) if job], seen)
    seen.update((row["id"], row) for row in reread)
    found += reread
    entry["open"] = [job_id for job_id, row in seen.items() if not row["is_terminal"]]
    newest = max((row["updated_at"] for row in seen.values() if row["updated_at"]), default=None)
    newest_at = parse_datetime(newest)
    if newest_at and (watermark is None or newest_at > watermark):
        entry["watermark"] = iso_z(newest_at)
    return found


def _history(
    client: ProviderRESTClient,
    ds_id: str,
    cutoff: pendulum.DateTime | None,
    list_params: dict[str, Any],
) -> Iterator[list[dict[str, Any]]]:
    params = {**list_params, **({UPDATED_AFTER_PARAM: iso_z(cutoff)} if cutoff else {})}
    walk = HistoryWalk(cutoff)
    path = endpoint_path("list_crawl_jobs", datasource_id=ds_id)
    listing = pages(client, "list_crawl_jobs", params, datasource_id=ds_id)
    for page in log_pages(PROVIDER, f"crawl jobs of {ds_id}", listing):
        # `updated_at` sets the watermark, `created_at` the early stop
        for job in page:
            check_times(PROVIDER, path, job, JOB_TIME_FIELDS, "job")
        rows = [job_row(job) for job in page if updated_since(job, cutoff)]
        if rows:
            yield rows
        if walk.exhausted_after(page):
            break


def _reread(
    client: ProviderRESTClient, ds_id: str, job_ids: list[str], seen: dict[str, Any]
) -> list[dict[str, Any]]:
    """Jobs that were running at the last sync (or are active now) and the history skipped."""
    rows = []
    for job_id in job_ids:
        if job_id in seen:
            continue
        try:
            job = get_crawl_job(client, ds_id, job_id)
            path = endpoint_path("get_crawl_job", datasource_id=ds_id, job_id=job_id)
            check_times(PROVIDER, path, job, JOB_TIME_FIELDS, "job")
            rows.append(job_row(job))
        except ProviderAPIError as exc:
            if exc.status != 404:
                raise
            logger.warning(f"opencx: crawl job {job_id} of {ds_id} vanished; not re-read again")
    return rows


MARK_JOBS_DELETED_SQL = """
UPDATE {jobs} SET is_deleted = true
WHERE NOT is_deleted AND datasource_id IN (SELECT id FROM {sources} WHERE is_deleted)
"""


def post_load(pipeline: dlt.Pipeline) -> int:
    """Flag the crawl jobs of datasources deleted on open.cx (idempotent, whole table)."""
    schema = pipeline.default_schema
    if "crawl_jobs" not in schema.tables or "datasources" not in schema.tables:
        return 0
    with pipeline.sql_client() as client:
        client.execute_sql(
            MARK_JOBS_DELETED_SQL.format(
                jobs=client.make_qualified_table_name("crawl_jobs"),
                sources=client.make_qualified_table_name("datasources"),
            )
        )
    return 0
