"""Reworkd API constants (docs: shared/api-docs/000_7ed04c4312c3c512.txt, api-notes.md §1)."""

from typing import Final

BASE_URL: Final = "https://api.reworkd.dev"
OUTPUTS_PATH: Final = "/v1/outputs/{group_id}"
# `limit` is documented as 1 <= x <= 1000; the largest page means the fewest requests.
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 1000
# Re-read window for late-arriving changes (rows the provider commits with an `update_date`
# older than the newest one we already saw). Not documented by Reworkd; 15 minutes covers
# the usual write lag of a scraper run at the cost of one extra page per group.
DEFAULT_LOOKBACK_SECONDS: Final = 900
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
CHANGE_TYPES: Final = ("CREATE", "UPDATE", "DELETE")
