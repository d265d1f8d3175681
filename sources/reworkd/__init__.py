"""Reworkd: the scraped outputs of your scraping groups, kept equal to Reworkd's latest state.

API: `GET /v1/outputs/{group_id}` (docs/reworkd.md). Every output is a change of a record
identified by `key_hash` (`CREATE`, `UPDATE`, `DELETE`); `created_after` returns everything
"created or updated on or after" a timestamp, and pages follow the integer
`metadata.next_cursor`.

Tables (dataset `reworkd`):
* `outputs`: one row per live record, primary key (group_id, key_hash).
* `outputs__files`: one row per file of each live record.
* `outputs_history` (option `history`): every version of every record.
* `_scrapesync_partitions`: one row per group, its watermark (docs/reworkd.md#incremental).

Package layout: this module wires the source and its one resource; `settings.py` holds
the endpoint table and limits, `client.py` the HTTP client and its error hints,
`resources.py` the resource body and the upkeep after each load, `transform.py` and
`columns.py` the pure page -> Arrow transforms.
"""

from __future__ import annotations

from collections.abc import Sequence

import dlt
from dlt.sources import DltResource

from scrapesync.sources.common.partitions import Shard, owned
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.reworkd.client import outputs_client
from scrapesync.sources.reworkd.resources import (
    DELETE_INSERT,
    OUTPUTS_KEY,
    RESOURCE,
    OutputsRead,
    outputs,
)
from scrapesync.sources.reworkd.settings import (
    BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PAGE_SIZE,
    FILTER_PARAMS,
    MAX_CONCURRENCY,
    MAX_PAGE_SIZE,
)

__all__ = ("reworkd_source",)


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
    concurrency: int = DEFAULT_CONCURRENCY,
    shard: str | None = None,
    stats: RequestStats | None = None,
) -> DltResource:
    """The Reworkd outputs of `group_ids`: one resource for every group, a watermark per group.

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
        concurrency: groups read at the same time (1..50, default 16).
        shard: `"i/N"` (0-based): sync only the groups shard i of N owns, by a stable hash of
            the group id (docs/reworkd.md#groups-concurrency-and-shards). N workers with
            `0/N` .. `N-1/N` load the same dataset at the same time; each group's watermark is
            its own row, so changing N loses nothing and re-reads at most `lookback`. None:
            every group.
        stats: request counters to fill (the CLI passes one to report requests per sync).
    """
    groups = owned(_validated_groups(group_ids), Shard.parse(shard, "sources.reworkd.shard"))
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"reworkd: page_size={page_size} is outside 1..{MAX_PAGE_SIZE} "
            "(the API's documented `limit` range): fix `sources.reworkd.page_size`"
        )
    if lookback < 0:
        raise ValueError("reworkd: `sources.reworkd.lookback` must be >= 0 seconds")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(
            f"reworkd: concurrency={concurrency} is outside 1..{MAX_CONCURRENCY}: fix "
            "`sources.reworkd.concurrency` (env SOURCES__REWORKD__CONCURRENCY)"
        )
    filters = {"job_id": job_id, "url": url, "country": country, "region": region}
    params = {name: value for name in FILTER_PARAMS if (value := filters[name])}
    read = OutputsRead(
        client=outputs_client(api_key, base_url, stats),
        groups=tuple(groups),
        params=params,
        page_size=page_size,
        history=history,
        initial=parse_datetime(start_date) if start_date else None,
        lookback=lookback,
        concurrency=concurrency,
    )
    resource = dlt.resource(
        outputs,
        name=RESOURCE,
        table_name="outputs",
        primary_key=OUTPUTS_KEY,
        write_disposition=DELETE_INSERT,
    )
    return resource(read)


def _validated_groups(group_ids: Sequence[str] | str) -> list[str]:
    groups = [group_ids] if isinstance(group_ids, str) else list(group_ids or [])
    groups = [group.strip() for group in groups if group and group.strip()]
    if not groups:
        raise ValueError(
            "reworkd: no scraping groups configured: set `sources.reworkd.group_ids` "
            "(e.g. env SOURCES__REWORKD__GROUP_IDS='[\"<group id>\"]'); the ids are on the "
            "groups page of the Reworkd app"
        )
    if any(not group.isprintable() for group in groups):
        raise ValueError(
            "reworkd: a group id in `sources.reworkd.group_ids` holds a control character: "
            f"{[group for group in groups if not group.isprintable()]!r}"
        )
    if len(set(groups)) != len(groups):
        raise ValueError(f"reworkd: `sources.reworkd.group_ids` repeats a group: {groups}")
    return groups
