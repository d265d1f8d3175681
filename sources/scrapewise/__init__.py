"""Scrapewise: scraper runs, their failed links, scrapers and scraped rows, run by run.

API: `https://portal.scrapewise.ai/api/scraper-api`, as scrapesync uses it in docs/scrapewise.md:
Bearer `sw_live_...` keys, RFC 7807 errors with 400 for unknown ids, Spring pages
(`page`/`size`/`sort`, `totalElements`), runs moving PENDING -> RUNNING -> COMPLETED / FAILED /
STOPPED. The unit of incremental sync is the run (docs/scrapewise.md#incremental-sync): the run
history is read newest first down to a watermark, and each run's failed links and rows are read
once, when the run is terminal.

Layout: this module wires the source and its resources with their hints; `settings.py` holds
the endpoint table, `client.py` the HTTP client and error hints, `resources.py` (with
`history.py`, the run-history window) the resource bodies, `transform.py` the row shaping,
`actions.py` the merge/delete/run/stop actions and `post_load`.

Tables (dataset `scrapewise`):
* `jobs`: one row per run, primary key `id`; soft-deleted runs stay, with `is_deleted`.
* `job_errors`: failed links of terminal runs, primary key (job_id, url).
* `scrapers`: one row per scraper with its last run and a config summary, primary key `id`.
* `rows`: scraped rows of terminal runs, primary key (job_id, row_index).
* `enriched_rows`: each group's enriched (merged) dataset, primary key (group_id, row_index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dlt
from dlt.sources import DltResource

from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.scrapewise.actions import post_load
from scrapesync.sources.scrapewise.client import check_object_ids, make_client
from scrapesync.sources.scrapewise.history import scopes_for
from scrapesync.sources.scrapewise.resources import (
    enriched_rows,
    job_errors,
    jobs,
    rows,
    scrapers,
)
from scrapesync.sources.scrapewise.settings import (
    BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    MAX_CONCURRENCY,
    MAX_PAGE_SIZE,
)

__all__ = ["post_load", "scrapewise_source"]

DELETE_INSERT: Any = {"disposition": "merge", "strategy": "delete-insert"}
JOBS_COLUMNS: Any = {"cost_lines": {"data_type": "json"}, "is_deleted": {"data_type": "bool"}}
SCRAPER_COLUMNS: Any = {
    name: {"data_type": "text"} for name in ("schema_id", "config_error", "config_start_type")
}
ENRICHED_COLUMNS: Any = {"_deleted": {"data_type": "bool", "hard_delete": True}}


@dlt.source(name="scrapewise")
def scrapewise_source(
    api_key: str = dlt.secrets.value,
    base_url: str = BASE_URL,
    group_ids: Sequence[str] | None = None,
    scraper_ids: Sequence[str] | None = None,
    start_date: str | None = None,
    with_deleted: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    stats: RequestStats | None = None,
) -> list[DltResource]:
    """Scrapewise runs, failed links, scrapers, scraped rows and enriched rows.

    Args:
        api_key: Scrapewise API key `sw_live_<prefix>.<secret>` (sent as Bearer).
        base_url: API root; point it at the sandbox or a proxy.
        group_ids: groups to sync (default: every run the key can see).
        scraper_ids: scrapers to sync, in addition to `group_ids`.
        start_date: ISO date(-time); the first sync reads runs started from there on.
        with_deleted: also read soft-deleted runs (`withDeleted=true`), flagged `is_deleted`.
        page_size: rows per page (Spring `size`, 1..1000).
        concurrency: requests in flight at once: history reads of the configured groups and
            scrapers, per-run failed links and rows, scraper configs, enriched datasets. There
            is no `shard` option: each group's watermark lives in dlt's pipeline state, one
            blob per pipeline, which concurrent shards would overwrite
            (docs/scrapewise.md#many-groups-and-scrapers).
        stats: request counters to fill (the CLI passes one to report requests per sync).
    """
    groups = check_object_ids(_as_list(group_ids), "group id", "`sources.scrapewise.group_ids`")
    scraper_list = check_object_ids(
        _as_list(scraper_ids), "scraper id", "`sources.scrapewise.scraper_ids`"
    )
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"scrapewise: page_size={page_size} is outside 1..{MAX_PAGE_SIZE}: fix "
            "`sources.scrapewise.page_size` (env SOURCES__SCRAPEWISE__PAGE_SIZE)"
        )
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(
            f"scrapewise: concurrency={concurrency} is outside 1..{MAX_CONCURRENCY}: fix "
            "`sources.scrapewise.concurrency` (env SOURCES__SCRAPEWISE__CONCURRENCY)"
        )
    start = parse_datetime(start_date) if start_date else None
    client = make_client(api_key, base_url, stats)
    runs = dlt.resource(
        jobs,
        name="jobs",
        primary_key="id",
        write_disposition=DELETE_INSERT,
        columns=JOBS_COLUMNS,
    )(client, scopes_for(groups, scraper_list), page_size, start, with_deleted, concurrency)
    errors = dlt.transformer(
        job_errors,
        data_from=runs,
        name="job_errors",
        primary_key=("job_id", "url"),
        write_disposition=DELETE_INSERT,
    )(client, concurrency)
    run_rows = dlt.transformer(
        rows,
        data_from=runs,
        name="rows",
        primary_key=("job_id", "row_index"),
        merge_key="job_id",
        write_disposition=DELETE_INSERT,
    )(client, page_size, concurrency)
    scraper_resource = dlt.resource(
        scrapers,
        name="scrapers",
        primary_key="id",
        write_disposition=DELETE_INSERT,
        columns=SCRAPER_COLUMNS,
    )(client, groups, scraper_list, concurrency)
    enriched = dlt.resource(
        enriched_rows,
        name="enriched_rows",
        primary_key=("group_id", "row_index"),
        merge_key="group_id",
        write_disposition=DELETE_INSERT,
        columns=ENRICHED_COLUMNS,
    )(client, groups, page_size, concurrency)
    return [runs, errors, run_rows, scraper_resource, enriched]


def _as_list(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    listed = [values] if isinstance(values, str) else list(values)
    if len(set(listed)) != len(listed):
        raise ValueError(f"scrapewise: an id is listed twice: {listed}")
    return listed
