"""Reworkd: the scraped outputs of your scraping groups, kept equal to Reworkd's latest state.

API: `GET /v1/outputs/{group_id}` (docs/reworkd.md). Every output is a change of a record
identified by `key_hash` (`CREATE`, `UPDATE`, `DELETE`); `created_after` returns everything
"created or updated on or after" a timestamp, and pages follow the integer
`metadata.next_cursor`.

Tables (dataset `reworkd`):
* `outputs`: one row per live record, primary key (group_id, key_hash).
* `outputs__files`: one row per file of each live record.
* `outputs_history` (option `history`): every version of every record.

Package layout: this module wires the source and one resource per group; `settings.py` holds
the endpoint table and limits, `client.py` the HTTP client and its error hints,
`resources.py` the resource body and the upkeep after each load, `transform.py` and
`columns.py` the pure page -> Arrow transforms.
"""

from __future__ import annotations

from collections.abc import Sequence

import dlt
import pendulum
from dlt.sources import DltResource

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.reworkd.client import outputs_client
from scrapesync.sources.reworkd.resources import DELETE_INSERT, OUTPUTS_KEY, outputs
from scrapesync.sources.reworkd.settings import (
    BASE_URL,
    DEFAULT_LOOKBACK_SECONDS,
    DEFAULT_PAGE_SIZE,
    FILTER_PARAMS,
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
    client = outputs_client(api_key, base_url, stats)
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
        # (docs/dlt-behaviours.md, "Incremental cursors": `lag` and boundary deduplication)
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
