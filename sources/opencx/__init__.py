"""open.cx: website datasources with their page statistics, and every crawl job they ran.

API: the Crawl API of api.open.cx, as described in docs/opencx.md (public reference:
https://docs.open.cx/api-reference/crawl). Bearer keys `ocx_live_...` scoped `crawl:read`
(enough to sync) / `crawl:write` (actions); lists are `{items, next}` with `?cursor=`; 100
requests per minute, which the client paces itself to. The list paths (`GET /crawl`,
`GET /crawl/{id}/crawls`) are inferred, not documented: they are kept in one table,
`settings.ENDPOINTS`.

Tables (dataset `opencx`):
* `datasources`: one row per website datasource, primary key `id`, `page_stats__*` flattened;
  a datasource deleted on open.cx stays as a row with `is_deleted = true`.
* `crawl_jobs`: one row per crawl job, primary key `id`, with the page counters and the derived
  `duration_s`; jobs still running are re-read on each sync until they end.

Layout: this module wires the source and its resources; their bodies are in `resources.py`,
the HTTP client in `client.py`, constants and the endpoint table in `settings.py`, row
transforms in `transform.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dlt
from dlt.sources import DltResource

from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.opencx.client import make_client, validate_uuid
from scrapesync.sources.opencx.resources import crawl_jobs, datasources, post_load
from scrapesync.sources.opencx.settings import (
    BASE_URL,
    CRAWL_JOB_COLUMNS,
    DATASOURCE_COLUMNS,
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PACING_WINDOW_SECONDS,
    DEFAULT_REQUESTS_PER_MINUTE,
    IDS_SETTING,
    MAX_CONCURRENCY,
    PAGE_SIZE_PARAM,
)

__all__ = ["opencx_source", "post_load"]

DELETE_INSERT: Any = {"disposition": "merge", "strategy": "delete-insert"}


@dlt.source(name="opencx")
def opencx_source(
    api_key: str = dlt.secrets.value,
    base_url: str = BASE_URL,
    datasource_ids: Sequence[str] | None = None,
    start_date: str | None = None,
    requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
    pacing_window_seconds: float = DEFAULT_PACING_WINDOW_SECONDS,
    lookback: int = DEFAULT_LOOKBACK_SECONDS,
    page_size: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    stats: RequestStats | None = None,
) -> list[DltResource]:
    """The open.cx datasources of the key's organisation and their crawl jobs.

    Args:
        api_key: open.cx API key (`ocx_live_...`, scope `crawl:read`), sent as Bearer.
        base_url: API root; point it at the sandbox or a proxy.
        datasource_ids: only these datasources (UUIDs); default: every datasource listed.
        start_date: ISO date(-time); the first sync reads crawl jobs updated from then on.
        requests_per_minute: client-side pace, at most this many requests per minute (open.cx
            allows 100); on a 429 the client also waits as told by `Retry-After`.
        pacing_window_seconds: the per-minute budget is held in every window this long (60:
            bursts up to the whole budget; shorter: smoother, e.g. for a stricter proxy).
        lookback: seconds re-read before each datasource's job watermark (late commits).
        page_size: items per list request (`limit`, not documented: unset = the API's default).
        concurrency: datasources read at once (1..32); requests still keep to the pace above.
            There is no `shard` option: the per-datasource watermarks live in dlt's pipeline
            state, one blob per pipeline, which concurrent shards would overwrite
            (docs/opencx.md#many-datasources).
        stats: request counters to fill (the runner passes one).
    """
    ids = _validated_ids(datasource_ids)
    if lookback < 0:
        raise ValueError("opencx: `sources.opencx.lookback` must be >= 0 seconds")
    if page_size is not None and page_size < 1:
        raise ValueError(f"opencx: page_size={page_size} must be >= 1 (or unset)")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(
            f"opencx: concurrency={concurrency} is outside 1..{MAX_CONCURRENCY}: fix "
            "`sources.opencx.concurrency` (env SOURCES__OPENCX__CONCURRENCY)"
        )
    client = make_client(api_key, base_url, requests_per_minute, pacing_window_seconds, stats)
    start = parse_datetime(start_date) if start_date else None
    list_params = {PAGE_SIZE_PARAM: page_size} if page_size else {}
    sources = dlt.resource(
        datasources,
        name="datasources",
        primary_key="id",
        write_disposition=DELETE_INSERT,
        columns=DATASOURCE_COLUMNS,
    )(client, ids, list_params, concurrency)
    jobs = dlt.transformer(
        crawl_jobs,
        name="crawl_jobs",
        data_from=sources,
        primary_key="id",
        write_disposition=DELETE_INSERT,
        columns=CRAWL_JOB_COLUMNS,
    )(client, start, lookback, list_params, concurrency)
    return [sources, jobs]


def _validated_ids(datasource_ids: Sequence[str] | str | None) -> list[str]:
    ids = [datasource_ids] if isinstance(datasource_ids, str) else list(datasource_ids or [])
    ids = [validate_uuid(value, "datasource id", IDS_SETTING) for value in ids if value]
    if len(set(ids)) != len(ids):
        raise ValueError(f"opencx: {IDS_SETTING} repeats a datasource: {ids}")
    return ids
