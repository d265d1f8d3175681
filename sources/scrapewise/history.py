"""The run-history window: what `jobs` reads each sync, and how it knows it read everything.

`GET /api/scraper/load-history` is a Spring page list sorted `started DESC`. Per scope (all
runs, one group, or one scraper) the state keeps the newest `started` seen (the watermark), the
scope's `totalElements` and the ids sitting exactly at the watermark. A sync reads newest first
and stops at the *floor*: the watermark, or the `started` of the oldest run that was still
PENDING or RUNNING at the last sync, whichever is older, so those runs are read again until
they are terminal.

Why not `dlt.sources.incremental`: a re-read run that was RUNNING has a `started` below the
cursor and the same primary key as the row already loaded, so the incremental would drop the
very update that must land (its new state, `finished`, link counts): dlt filters out rows
below the cursor's start value and deduplicates those at it (docs/dlt-behaviours.md,
incremental cursors: boundary deduplication). The watermark design is explained in
docs/scrapewise.md#incremental-sync.

Counts are checked against `totalElements`: a read to the end must see that many runs, and an
incremental read must find `total before + new runs`. A mismatch means the list moved under
the read (page-number pagination over a live list skips a row when one is removed) or runs
appeared below the watermark or were deleted; the scope is then read again in full, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pendulum
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import malformed_item
from scrapesync.sources.common.timeutil import iso_z
from scrapesync.sources.common.validation import check_times
from scrapesync.sources.scrapewise.settings import HISTORY_SORT, LOAD_HISTORY
from scrapesync.sources.scrapewise.transform import TIMESTAMP_FIELDS, timestamp

REQUIRED_FIELDS = ("id", "groupId", "state")


@dataclass(frozen=True)
class Scope:
    """One `filters` value of the history: all runs, one group or one scraper."""

    filters: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return orjson.dumps(dict(self.filters), option=orjson.OPT_SORT_KEYS).decode()

    def matches(self, run: dict[str, Any]) -> bool:
        return all(run.get(name) == value for name, value in self.filters)


class ScopeIndex:
    """The scopes a run belongs to, found by lookup: testing every scope against every open
    run costs scopes x runs (10,000 groups with a run open each: 10^8 tests, minutes)."""

    def __init__(self, scopes: Iterable[Scope]) -> None:
        self.unfiltered: list[Scope] = []
        self.by_filter: dict[tuple[str, str], list[Scope]] = {}
        for scope in scopes:
            if scope.filters:
                self.by_filter.setdefault(scope.filters[0], []).append(scope)
            else:
                self.unfiltered.append(scope)
        self.names = {name for name, _ in self.by_filter}

    def of(self, run: dict[str, Any]) -> list[Scope]:
        found = list(self.unfiltered)
        for name in self.names:
            value = run.get(name)
            if isinstance(value, str):  # filter values are ids: nothing else can equal one
                found += [s for s in self.by_filter.get((name, value), ()) if s.matches(run)]
        return found


def scopes_for(group_ids: Sequence[str], scraper_ids: Sequence[str]) -> list[Scope]:
    """All runs when nothing is configured, else one scope per group and per scraper."""
    scopes = [Scope((("groupId", group),)) for group in group_ids]
    scopes += [Scope((("scraperId", scraper),)) for scraper in scraper_ids]
    return scopes or [Scope()]


@dataclass
class Pass:
    """What one newest-first read of a scope saw."""

    floor: pendulum.DateTime | None
    ids: set[str] = field(default_factory=set)
    started: dict[str, pendulum.DateTime | None] = field(default_factory=dict)
    totals: list[int] = field(default_factory=list)
    reached_end: bool = False

    @property
    def moved(self) -> bool:
        """The list's total changed between pages: rows may have shifted across pages."""
        return len(set(self.totals)) > 1


def read_pass(
    client: ProviderRESTClient,
    scope: Scope,
    floor: pendulum.DateTime | None,
    page_size: int,
    with_deleted: bool,
    result: Pass,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of runs newer than or at `floor`, newest first; stops at the first older run."""
    params: dict[str, Any] = {
        "size": page_size,
        "sort": HISTORY_SORT,
        "withDeleted": "true" if with_deleted else "false",
    }
    if scope.filters:
        params["filters"] = scope.key
    for page in client.paginate(LOAD_HISTORY.path, params=params):
        body = page.response.json()
        if isinstance(body, dict) and isinstance(body.get("totalElements"), int):
            result.totals.append(body["totalElements"])
        kept, passed_floor = _within(page, floor)
        for run in kept:
            result.ids.add(run["id"])
            result.started[run["id"]] = timestamp(run.get("started"))
        if kept:
            yield kept
        if passed_floor:
            return
    result.reached_end = True


def _within(page: list[Any], floor: pendulum.DateTime | None) -> tuple[list[dict[str, Any]], bool]:
    kept: list[dict[str, Any]] = []
    for run in page:
        missing = [
            name for name in REQUIRED_FIELDS if not isinstance(run, dict) or not run.get(name)
        ]
        if missing:
            detail = f"a run lacks {', '.join(missing)}"
            raise malformed_item("scrapewise", LOAD_HISTORY.path, detail)
        # `started` orders the list and sets the watermark
        check_times("scrapewise", LOAD_HISTORY.path, run, TIMESTAMP_FIELDS, "run")
        started = timestamp(run.get("started"))
        # Mongo sorts a missing `started` last under DESC (inferred); kept, never a stop
        if floor is not None and started is not None and started < floor:
            return kept, True
        kept.append(run)
    return kept, False


@dataclass
class ScopeMark:
    """The state of one scope between syncs (stored as plain JSON in resource state)."""

    watermark: str | None = None
    total: int | None = None
    at_watermark: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, raw: dict[str, Any] | None) -> ScopeMark:
        return cls(**raw) if raw else cls()

    def dump(self) -> dict[str, Any]:
        return {"watermark": self.watermark, "total": self.total, "at_watermark": self.at_watermark}

    def floor(
        self, open_started: list[pendulum.DateTime], start: pendulum.DateTime | None
    ) -> pendulum.DateTime | None:
        """Read down to the watermark or the oldest still-open run; the first read to `start`."""
        if self.watermark is None:
            return start
        candidates = [timestamp(self.watermark), *open_started]
        return min(moment for moment in candidates if moment is not None)

    def expected_total(self, seen: Pass) -> int | None:
        """`totalElements` an incremental read must find if nothing appeared or vanished below."""
        if self.total is None or self.watermark is None:
            return None
        mark = timestamp(self.watermark)
        new = 0
        for run_id, started in seen.started.items():
            newer = started is None or mark is None or started > mark
            if newer or (started == mark and run_id not in self.at_watermark):
                new += 1
        return self.total + new

    def consistent(self, seen: Pass) -> bool:
        if seen.moved:
            return False
        total = seen.totals[0] if seen.totals else None
        if total is None:
            return True  # no count to check against (a proxy or an older API version)
        if seen.reached_end:  # the whole list was read, newest to oldest: every run was seen
            return len(seen.ids) == total
        expected = self.expected_total(seen)
        return expected is None or expected == total

    def advanced(self, seen: Pass) -> ScopeMark:
        """The mark after a consistent read: newest `started`, its ids, the list's total."""
        known = [moment for moment in seen.started.values() if moment is not None]
        old = timestamp(self.watermark) if self.watermark else None
        newest = max([*known, *([old] if old else [])], default=None)
        if newest is None:
            return ScopeMark(None, seen.totals[-1] if seen.totals else None, [])
        at_mark = [run_id for run_id, moment in seen.started.items() if moment == newest]
        if old is not None and newest == old:
            at_mark = sorted(set(at_mark) | set(self.at_watermark))
        total = seen.totals[-1] if seen.totals else None
        return ScopeMark(iso_z(newest), total, at_mark)


def log_inconsistent(scope: Scope, seen: Pass, mark: ScopeMark) -> None:
    total = seen.totals[0] if seen.totals else None
    logger.warning(
        f"scrapewise jobs {scope.key}: the run history does not add up (read {len(seen.ids)} "
        f"runs, totalElements {total}, expected {mark.expected_total(seen)}, list moved "
        f"during the read: {seen.moved}); reading this scope again in full"
    )
