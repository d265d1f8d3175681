"""Reworkd API constants: base URL, THE endpoint table, pagination, page sizes and limits.

What each value means, and which ones Reworkd documents, is in docs/reworkd.md. Every path
lives in `ENDPOINTS` and nowhere else, so a correction is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal


@dataclass(frozen=True)
class Endpoint:
    """One API call scrapesync makes.

    Attributes:
        name: how the code refers to the call.
        method / path: the HTTP method and the path below `BASE_URL` (`{placeholders}`).
        pagination: how its pages are followed.
        feeds: the tables its answers end up in.
        evidence: "documented" by Reworkd, or "inferred" by scrapesync
            (docs/reworkd.md#what-scrapesync-infers).
    """

    name: str
    method: str
    path: str
    pagination: str
    feeds: str
    evidence: Literal["documented", "inferred"]


BASE_URL: Final = "https://api.reworkd.dev"

# THE endpoint table (docs/reworkd.md#endpoints). Reworkd documents one public endpoint; its
# other routes (groups, jobs) are internal and undocumented, so scrapesync does not call them.
ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        name="outputs",
        method="GET",
        path="/v1/outputs/{group_id}",
        pagination="integer cursor: `metadata.next_cursor` sent back as `?cursor=`",
        feeds="outputs, outputs__files, outputs_history",
        evidence="documented",
    ),
)


def endpoint(name: str) -> Endpoint:
    """The row of `ENDPOINTS` called `name`."""
    for row in ENDPOINTS:
        if row.name == name:
            return row
    raise KeyError(f"reworkd: no endpoint {name!r} in settings.ENDPOINTS")


OUTPUTS: Final = endpoint("outputs")

# Pagination (docs/reworkd.md#pagination): `{metadata: {next_cursor, next_url}, items: [...]}`.
ITEMS_SELECTOR: Final = "items"
NEXT_CURSOR_PATH: Final = "metadata.next_cursor"
CURSOR_PARAM: Final = "cursor"
PAGE_SIZE_PARAM: Final = "limit"
# "created or updated on or after" this ISO 8601 time: inclusive (docs/reworkd.md#incremental).
WATERMARK_PARAM: Final = "created_after"
# `limit` is documented as 1 <= x <= 1000; the largest page means the fewest requests.
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 1000
# Re-read window for late-arriving changes (rows the provider commits with an `update_date`
# older than the newest one we already saw). Not documented by Reworkd; 15 minutes covers
# the usual write lag of a scraper run at the cost of one extra page per group
# (docs/reworkd.md#what-scrapesync-infers, option `lookback`).
DEFAULT_LOOKBACK_SECONDS: Final = 900
# Groups read at the same time (`sources.reworkd.concurrency`). Reworkd documents no rate limit
# (docs/reworkd.md#limits); 16 requests in flight keep 1,000 groups at 50 ms round trips within
# a few seconds, and a 429 is still honoured per request. At most 50: dlt's session keeps 50
# connections per host, and a request beyond the pool opens (and drops) a connection of its own.
DEFAULT_CONCURRENCY: Final = 16
MAX_CONCURRENCY: Final = 50
# Pages waiting for the resource between the fetching threads and dlt (memory bound: each
# page is at most `page_size` outputs; each fetching thread holds at most one more).
PAGE_BUFFER: Final = 4
# Query parameters documented as plain filters, passed through unchanged when set.
FILTER_PARAMS: Final = ("job_id", "url", "country", "region")

# Output fields kept as scalar columns (the order is the column order of table `outputs`).
SCALAR_FIELDS: Final = (
    "id",
    "output_id",
    "root_job_id",
    "is_approved",
    "create_date",
    "update_date",
    "last_scraped_date",
    "source_url",
    "change_type",
    "key_hash",
    "value_hash",
)
TIMESTAMP_FIELDS: Final = ("create_date", "update_date", "last_scraped_date")
FLATTENED_FIELDS: Final = ("data", "tags")
FILE_FIELDS: Final = (
    "id",
    "field",
    "file_type",
    "file_url",
    "s3_key",
    "s3_url",
    "source_url",
    "create_date",
    "file_checksum",
    "url_etag_hash",
    "file_metadata",
)
# `ChangesetAction` (docs/reworkd.md#change-types)
CHANGE_TYPES: Final = ("CREATE", "UPDATE", "DELETE")
