"""Pure row shaping: API objects of Scrapewise -> rows of the `scrapewise` dataset."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson
import pendulum

from scrapesync.sources.common.shapes import current_naming, safe_row
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.scrapewise.settings import SCRAPED_AT_FIELDS

TIMESTAMP_FIELDS = ("started", "finished")
# columns scrapesync adds to scraped rows: a scraped field of such a name lands in `user_<name>`
ROW_COLUMNS = ("job_id", "group_id", "scraper_id", "scraped_at", "row_index")
ENRICHED_COLUMNS = ("group_id", "enriched_group_id", "_version", "row_index", "_deleted")
# a run's documented fields (docs/scrapewise.md, "Shapes scrapesync relies on"); any other field
# is schema drift and lands as a column too, renamed where dlt would merge or take it
RUN_FIELDS = (
    "id",
    "groupId",
    "scraperId",
    "state",
    "started",
    "finished",
    "successLinks",
    "errorLinks",
    "launchedByCustomer",
    "jobId",
    "itemsQuantity",
    "totalRequests",
    "attempted",
    "notAttempted",
    "duration",
    "stopReason",
    "errorMessage",
    "costLines",
)


def timestamp(value: Any) -> pendulum.DateTime | None:
    """ISO 8601 (with `Z`) -> UTC; anything unparsable stays None rather than failing a sync."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_datetime(value)
    except (ValueError, TypeError, pendulum.parsing.exceptions.ParserError):
        return None


def job_row(run: dict[str, Any], vanished: bool = False) -> dict[str, Any]:
    """One run as a `jobs` row: the API's fields, typed timestamps, and `is_deleted`.

    `deleted` is how `withDeleted=true` is assumed to flag a soft-deleted run (inferred:
    docs/scrapewise.md#what-scrapesync-infers); a run that vanished from the history between
    two syncs is marked the same way.
    """
    naming = current_naming()
    own = {naming.normalize_identifier(name) for name in (*RUN_FIELDS, "is_deleted")}
    drift = {k: v for k, v in run.items() if k not in RUN_FIELDS and k != "deleted"}
    row = {key: run[key] for key in RUN_FIELDS if key in run} | safe_row(drift, own, naming)
    for name in TIMESTAMP_FIELDS:
        row[name] = timestamp(run.get(name))
    row["is_deleted"] = bool(run.get("deleted")) or vanished
    return row


def error_rows(run: dict[str, Any], links: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed links of one run, one row per URL (the last report of a URL wins)."""
    rows: dict[str, dict[str, Any]] = {}
    for link in links:
        url = link.get("url")
        if not url:
            continue
        rows[url] = {
            "job_id": run["id"],
            "group_id": run.get("groupId"),
            "scraper_id": run.get("scraperId"),
            "url": url,
            "status": link.get("status"),
            "error": link.get("error"),
            "job_finished": run.get("finished"),
        }
    return list(rows.values())


def scraped_at(row: dict[str, Any]) -> pendulum.DateTime | None:
    """`_scrapedAt` (docs) or `_sw_run_date` + `_sw_run_time` (SDK), whichever is there."""
    moment = timestamp(row.get(SCRAPED_AT_FIELDS[0]))
    if moment is None and row.get(SCRAPED_AT_FIELDS[1]):
        moment = timestamp(f"{row[SCRAPED_AT_FIELDS[1]]}T{row.get('_sw_run_time') or '00:00:00'}")
    return moment


def data_rows(run: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's scraped rows with the run id, group id, scraper id, scrape time and position.

    The scraper's own fields keep their names (dlt types them: numbers, booleans, text);
    names dlt would merge or take for its own are renamed (sources/common/shapes.py).
    """
    shaped = []
    for index, row in enumerate(rows):
        out = safe_row(row, ROW_COLUMNS)
        out.update(
            job_id=run["id"],
            group_id=run.get("groupId"),
            scraper_id=run.get("scraperId"),
            scraped_at=scraped_at(row),
            row_index=index,
        )
        shaped.append(out)
    return shaped


def content_hash(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)).hexdigest()


def enriched_rows(
    group: dict[str, Any], sibling: dict[str, Any], rows: list[dict[str, Any]], version: str
) -> list[dict[str, Any]]:
    """The enriched dataset of a group; an empty dataset becomes one hard-delete marker row."""
    base = {"group_id": group["id"], "enriched_group_id": sibling.get("id"), "_version": version}
    if not rows:
        return [{**base, "row_index": -1, "_deleted": True}]
    return [
        {**safe_row(row, ENRICHED_COLUMNS), **base, "row_index": index, "_deleted": False}
        for index, row in enumerate(rows)
    ]


def removed_enrichment(group_id: str) -> dict[str, Any]:
    return {"group_id": group_id, "row_index": -1, "_deleted": True}


def scraper_row(
    summary: dict[str, Any], full: dict[str, Any], deleted: bool = False
) -> dict[str, Any]:
    """Scraper summary plus a flat config summary (the full config stays at Scrapewise)."""
    config = full.get("config") or {}
    source = config.get("sourceConfig") or {}
    pagination = source.get("pagination") or {}
    items = config.get("itemsConfig") or []
    return {
        "id": summary["id"],
        "name": full.get("name", summary.get("name")),
        "type": full.get("type", summary.get("type")),
        "group_id": full.get("groupId", summary.get("groupId")),
        "schema_id": full.get("schemaId"),
        "last_run": timestamp(full.get("lastRun", summary.get("lastRun"))),
        "last_run_state": full.get("lastRunState", summary.get("lastRunState")),
        "manual": full.get("manual"),
        "should_use_java_script": full.get("shouldUseJavaScript"),
        "created_at": timestamp(full.get("createdAt")),
        "updated_at": timestamp(full.get("updatedAt")),
        "config_type": config.get("type"),
        "config_timeout": config.get("timeout"),
        "config_start_type": config.get("startType"),
        "config_error": config.get("error"),
        "source_url": source.get("url"),
        "pagination_type": pagination.get("type"),
        "pagination_max": pagination.get("max"),
        "item_fields": ",".join(str(item.get("name")) for item in items if isinstance(item, dict)),
        "post_process_rules": len(config.get("postProcessRules") or []),
        "is_deleted": deleted,
    }
