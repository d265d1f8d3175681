"""Pure helpers: API objects -> table rows, and the early-stop rule of the job history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pendulum

from scrapesync.sources.common.shapes import current_naming, safe_row
from scrapesync.sources.common.timeutil import parse_datetime
from scrapesync.sources.common.validation import undocumented
from scrapesync.sources.opencx.settings import (
    ACTIVE_JOB_FIELDS,
    DATASOURCE_FIELDS,
    JOB_FIELDS,
    PAGE_STATS_FIELDS,
    TERMINAL_STATUSES,
)

# schema drift (fields the docs do not list) lands as new columns; these two are flattened
DATASOURCE_DOCUMENTED = frozenset((*DATASOURCE_FIELDS, "page_stats", "active_crawl_job"))
# the columns scrapesync sets on each table: a drifted field of such a name is renamed
DATASOURCE_OWN = (
    *DATASOURCE_FIELDS,
    *(f"page_stats__{name}" for name in PAGE_STATS_FIELDS),
    *(f"active_crawl_job__{name}" for name in ACTIVE_JOB_FIELDS),
    "is_deleted",
    "deleted_at",
)
JOB_OWN = (*JOB_FIELDS, "duration_s", "is_terminal", "is_deleted")


def drift(fields: dict[str, Any], own: Sequence[str]) -> dict[str, Any]:
    """Undocumented fields as columns, renamed where dlt would merge them with each other or
    with a column scrapesync sets (sources/common/shapes.py)."""
    naming = current_naming()
    return safe_row(fields, {naming.normalize_path(name) for name in own}, naming)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def datasource_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """A datasource with `page_stats` and `active_crawl_job` flattened (`page_stats__total`).

    Fields the docs do not list, at the top or inside those two objects, land as columns too
    (`page_stats__<field>`); a non-object in their place lands as its own column.
    """
    row: dict[str, Any] = {name: item.get(name) for name in DATASOURCE_FIELDS}
    stats, active = item.get("page_stats"), item.get("active_crawl_job")
    extra = undocumented(dict(item), DATASOURCE_DOCUMENTED)
    for name, value, documented in (
        ("page_stats", stats, PAGE_STATS_FIELDS),
        ("active_crawl_job", active, ACTIVE_JOB_FIELDS),
    ):
        if isinstance(value, dict):
            if more := undocumented(value, documented):
                extra[name] = more
        elif value is not None:
            extra[name] = value
    row.update(drift(extra, DATASOURCE_OWN))
    row.update({f"page_stats__{name}": _object(stats).get(name) for name in PAGE_STATS_FIELDS})
    row.update(
        {f"active_crawl_job__{name}": _object(active).get(name) for name in ACTIVE_JOB_FIELDS}
    )
    row["is_deleted"] = False
    row["deleted_at"] = None
    return row


def deleted_marker(last_seen: Mapping[str, Any], at: pendulum.DateTime) -> dict[str, Any]:
    """The last row seen of a datasource that no longer exists, flagged deleted."""
    row = dict(last_seen)
    row.update({f"active_crawl_job__{name}": None for name in ACTIVE_JOB_FIELDS})
    row["is_deleted"] = True
    row["deleted_at"] = at.isoformat()
    return row


def job_row(job: Mapping[str, Any]) -> dict[str, Any]:
    """A crawl job with its derived `duration_s` and `is_terminal`."""
    row: dict[str, Any] = {name: job.get(name) for name in JOB_FIELDS}
    row.update(drift(undocumented(dict(job), JOB_FIELDS), JOB_OWN))
    row["duration_s"] = duration_seconds(job.get("started_at"), job.get("completed_at"))
    row["is_terminal"] = job.get("status") in TERMINAL_STATUSES
    row["is_deleted"] = False
    return row


def duration_seconds(started: str | None, completed: str | None) -> float | None:
    """Seconds from start to end; None until the job has ended (it would change every read)."""
    start, end = parse_datetime(started), parse_datetime(completed)
    if start is None or end is None:
        return None
    return float((end - start).total_seconds())


def updated_since(job: Mapping[str, Any], cutoff: pendulum.DateTime | None) -> bool:
    if cutoff is None:
        return True
    updated = parse_datetime(job.get("updated_at"))
    return updated is None or updated >= cutoff


@dataclass
class HistoryWalk:
    """Decides when the newest-first job history has gone past `cutoff`.

    The list order is not documented (inferred newest first, docs/opencx.md#pagination): the
    early stop only fires once the pages prove that order (a creation time has decreased, none
    has increased, across pages too). One page holding one job proves nothing. Once a page
    breaks the order, the whole history is read: slower, but no job is ever missed.
    """

    cutoff: pendulum.DateTime | None
    last_created: pendulum.DateTime | None = None
    ordered: bool = True
    descended: bool = False

    def exhausted_after(self, page: Sequence[Mapping[str, Any]]) -> bool:
        for job in page:
            created = parse_datetime(job.get("created_at"))
            if created is None:
                self.ordered = False
                continue
            if self.last_created is not None:
                self.ordered = self.ordered and created <= self.last_created
                self.descended = self.descended or created < self.last_created
            self.last_created = created
        if self.cutoff is None or not (self.ordered and self.descended):
            return False
        assert self.last_created is not None
        return self.last_created < self.cutoff
