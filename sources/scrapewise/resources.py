"""The bodies of the Scrapewise resources (wired with their hints in `scrapewise_source`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dlt
import pendulum
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.partitions import map_bounded
from scrapesync.sources.common.timeutil import iso_z
from scrapesync.sources.scrapewise.client import (
    fetch_errors,
    fetch_rows,
    get_scraper,
    list_groups,
    list_scrapers,
)
from scrapesync.sources.scrapewise.history import (
    Pass,
    Scope,
    ScopeIndex,
    ScopeMark,
    log_inconsistent,
    read_pass,
)
from scrapesync.sources.scrapewise.settings import (
    ACTIVE_STATES,
    BATCH_ROWS,
    ENRICHED_ROWS_SORT,
    ENRICHED_SUFFIX,
    ROWS_SORT,
    TERMINAL_STATES,
)
from scrapesync.sources.scrapewise.transform import (
    content_hash,
    data_rows,
    error_rows,
    job_row,
    removed_enrichment,
    scraper_row,
    timestamp,
)
from scrapesync.sources.scrapewise.transform import enriched_rows as shape_enriched

# the filters a run's scopes use besides "all runs" (`history.scopes_for`), in `_done` order
SCOPE_FIELDS = ("groupId", "scraperId")


def jobs(
    client: ProviderRESTClient,
    scopes: list[Scope],
    page_size: int,
    start: pendulum.DateTime | None,
    with_deleted: bool,
    concurrency: int = 1,
) -> Iterator[list[dict[str, Any]]]:
    """Scraper runs (`GET /api/scraper/load-history`) -> table `jobs`.

    * Primary key: `id` (the run's ObjectId).
    * Write disposition: merge (delete-insert): a re-read run replaces its row.
    * Incremental: newest first (`sort=started,desc`) per scope (all runs, or each configured
      group and scraper), stopping at the first run older than the scope's watermark (the
      newest `started` seen); `start_date` bounds the first read. Scopes are read
      `concurrency` at a time; their results are applied to the state in this thread. See
      `history.py` for why this is not `dlt.sources.incremental`.
    * Updates: runs PENDING or RUNNING at the last sync stay in resource state and are read
      again every sync (the read goes down to the oldest of them) until they are terminal,
      so their final `state`, `finished` and link counts land.
    * Deletes: a still-open run that vanished from the history (soft-deleted) is kept and
      marked `is_deleted`; when the scope's `totalElements` shows runs vanished below the
      watermark, the scope is re-read in full and `post_load` marks the runs it no longer
      lists. With `with_deleted`, soft-deleted runs are read with the API's own flag.
    * Late-arriving data: a run that shows up with a `started` below the watermark breaks the
      `totalElements` check, which re-reads the scope in full and loads it.
    """
    state = dlt.current.resource_state()
    marks: dict[str, Any] = state.setdefault("scopes", {})
    open_runs: dict[str, dict[str, Any]] = state.setdefault("open", {})
    reconciled: dict[str, Any] = state.setdefault("reconciled", {})
    was_open = dict(open_runs)
    started = _open_starts(scopes, was_open)
    todo = [
        (scope, mark := ScopeMark.load(marks.get(scope.key)), mark.floor(started[scope], start))
        for scope in scopes
    ]
    # where the transformers may forget the runs they read (see `_prune_done`)
    dlt.current.source_state()["floors"] = {
        scope.key: floor.isoformat() if floor else None for scope, _, floor in todo
    }

    def read(item: tuple[Scope, ScopeMark, pendulum.DateTime | None]) -> ScopeRead:
        return _read_scope(client, *item, page_size, start, with_deleted)

    yielded: set[str] = set()
    unsettled: list[Scope] = []  # scopes whose read did not add up: nothing there is gone
    batch = _Batch()
    for (scope, mark, _), found in map_bounded(read, todo, concurrency):
        for pages in found.passes:
            yield from batch.add(_fresh(pages, yielded, open_runs))
        if found.again is not None:
            if not ScopeMark().consistent(found.again):
                logger.warning(f"scrapewise jobs {scope.key}: still moving; read again next sync")
                unsettled.append(scope)
                continue
            reconciled[scope.key] = {
                "filters": dict(scope.filters),
                # asked only here: the load package exists only inside a pipeline's extract
                "load_id": dlt.current.load_package_state()["load_id"],
                "since": iso_z(start) if start else None,
            }
        marks[scope.key] = mark.advanced(found.again or found.seen).dump()
    yield from batch.flush()
    settled = [scope for scope in scopes if scope not in unsettled]
    yield from _vanished(was_open, open_runs, yielded, settled, unsettled)


@dataclass
class ScopeRead:
    """One scope's history as a worker read it: the incremental pass, and the full re-read
    when that pass did not add up (`again`)."""

    seen: Pass
    passes: list[list[list[dict[str, Any]]]]
    again: Pass | None = None


def _read_scope(
    client: ProviderRESTClient,
    scope: Scope,
    mark: ScopeMark,
    floor: pendulum.DateTime | None,
    page_size: int,
    start: pendulum.DateTime | None,
    with_deleted: bool,
) -> ScopeRead:
    """Read one scope (in a worker thread: no dlt state is touched here)."""
    seen = Pass(floor)
    first = list(read_pass(client, scope, seen.floor, page_size, with_deleted, seen))
    if mark.consistent(seen):
        return ScopeRead(seen, [first])
    log_inconsistent(scope, seen, mark)
    again = Pass(start)
    second = list(read_pass(client, scope, start, page_size, with_deleted, again))
    return ScopeRead(seen, [first, second], again)


class _Batch:
    """Rows of many partitions handed to dlt in lists of up to `BATCH_ROWS` (one small list
    per scope would cost dlt's per-item overhead once per scope)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, pages: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        for page in pages:
            self.rows += page
            if len(self.rows) >= BATCH_ROWS:
                yield from self.flush()

    def flush(self) -> Iterator[list[dict[str, Any]]]:
        rows, self.rows = self.rows, []
        if rows:
            yield rows


def _open_starts(
    scopes: list[Scope], open_runs: dict[str, dict[str, Any]]
) -> dict[Scope, list[pendulum.DateTime]]:
    """Each scope's open runs' `started` (its next read goes down to the oldest)."""
    started: dict[Scope, list[pendulum.DateTime]] = {scope: [] for scope in scopes}
    index = ScopeIndex(scopes)
    for run in open_runs.values():
        moment = timestamp(run.get("started"))
        if moment:
            for scope in index.of(run):
                started[scope].append(moment)
    return started


def _fresh(
    pages: Iterable[list[dict[str, Any]]],
    yielded: set[str],
    open_runs: dict[str, dict[str, Any]],
) -> Iterator[list[dict[str, Any]]]:
    """Runs not yielded yet in this sync, as rows; open runs are remembered for the next."""
    for page in pages:
        rows = []
        for run in page:
            if run["id"] in yielded:
                continue
            yielded.add(run["id"])
            if run["state"] not in TERMINAL_STATES and not run.get("deleted"):
                # an undocumented state is taken as still open: read again until it is final
                if run["state"] not in ACTIVE_STATES:
                    logger.warning(
                        f"scrapewise: run {run['id']} has undocumented state {run['state']!r}: "
                        "kept as sent and read again next sync until it is terminal"
                    )
                open_runs[run["id"]] = run
            else:
                open_runs.pop(run["id"], None)
            rows.append(job_row(run))
        if rows:
            yield rows


def _vanished(
    was_open: dict[str, dict[str, Any]],
    open_runs: dict[str, dict[str, Any]],
    yielded: set[str],
    settled: list[Scope],
    unsettled: list[Scope],
) -> Iterator[list[dict[str, Any]]]:
    """Open runs the history no longer lists although a consistent read went past their start.

    A run of a scope whose read did not add up (pages missing, the list moving) may just not
    have been seen: it stays open and is looked for again next sync.
    """
    rows = []
    moving, read = ScopeIndex(unsettled), ScopeIndex(settled)
    for run_id, run in was_open.items():
        if run_id in yielded or moving.of(run):
            continue
        open_runs.pop(run_id, None)
        if read.of(run):
            logger.warning(f"scrapewise: run {run_id} vanished from the history; kept, marked")
            rows.append(job_row(run, vanished=True))
    if rows:
        yield rows


def _todo(runs: list[dict[str, Any]], done: dict[str, Any], wanted: Any) -> list[dict[str, Any]]:
    return [
        run
        for run in runs
        if run["state"] in TERMINAL_STATES
        and not run.get("is_deleted")
        and run["id"] not in done
        and wanted(run)
    ]


def _done(run: dict[str, Any]) -> list[Any]:
    """What `done` keeps of a run read: enough to tell when `jobs` can no longer hand it over."""
    started = run.get("started")
    started_text = started.isoformat() if isinstance(started, datetime) else started
    return [started_text, run.get("groupId"), run.get("scraperId")]


def _prune_done(done: dict[str, Any]) -> None:
    """Forget the runs `jobs` will not hand over again, so `done` does not grow run after run.

    `jobs` reads each scope down to its floor (watermark or oldest open run, in source
    state); a terminal run started below the floor of every scope it belongs to comes back
    only with a full re-read of its scope (when the history does not add up), and then its
    rows or links are read again and replace themselves (merge key `job_id`).
    """
    floors: dict[str, str | None] = dlt.current.source_state().get("floors") or {}
    if not floors:
        return
    parsed = {key: timestamp(value) if value else None for key, value in floors.items()}
    for run_id in [run_id for run_id, entry in done.items() if _forgettable(entry, parsed)]:
        del done[run_id]


def _forgettable(entry: Any, floors: dict[str, pendulum.DateTime | None]) -> bool:
    if not isinstance(entry, list) or len(entry) != 3 or not entry[0]:
        return True  # written by an older version (`1`): at worst read once more
    started = timestamp(entry[0])
    keys = [Scope(()).key]
    pairs = zip(SCOPE_FIELDS, entry[1:], strict=True)
    keys += [Scope(((name, value),)).key for name, value in pairs]
    relevant = [floors[key] for key in keys if key in floors]
    # a scope read from its start (no floor) may hand any run over again: keep it then
    return all(floor is not None and started is not None and started < floor for floor in relevant)


def job_errors(
    runs: list[dict[str, Any]], client: ProviderRESTClient, concurrency: int
) -> Iterator[list[dict[str, Any]]]:
    """Failed links of each terminal run -> table `job_errors`.

    * Primary key: (job_id, url).
    * Write disposition: merge (delete-insert).
    * Incremental: driven by `jobs`: a run's links are read once, when it is first seen
      terminal with `errorLinks > 0`; resource state remembers the runs already read until
      `jobs` reads below them (`_prune_done`). Runs are fetched `concurrency` at a time
      through the one retrying client.
    * Updates: none expected (a terminal run's links are final); a re-read replaces rows.
    * Deletes: links stay when a run is soft-deleted (the run is marked in `jobs`).
    * Late-arriving data: a run that ends after the sync is read by the sync that sees it end.
    """
    done: dict[str, Any] = dlt.current.resource_state().setdefault("done", {})
    _prune_done(done)
    todo = _todo(runs, done, lambda run: (run.get("errorLinks") or 0) > 0)
    for run in _todo(runs, done, lambda run: not run.get("errorLinks")):
        done[run["id"]] = _done(run)  # no failed links: nothing to ask for
    batch: list[dict[str, Any]] = []
    for run, links in map_bounded(lambda run: fetch_errors(client, run), todo, concurrency):
        done[run["id"]] = _done(run)
        if links:
            batch += error_rows(run, links)
    if batch:
        yield batch


def rows(
    runs: list[dict[str, Any]], client: ProviderRESTClient, page_size: int, concurrency: int
) -> Iterator[list[dict[str, Any]]]:
    """Scraped rows of each terminal run (`GET /api/scraper/data/group/{id}`) -> table `rows`.

    * Primary key: (job_id, row_index); merge key `job_id`: a run's rows load as one unit.
    * Write disposition: merge (delete-insert).
    * Incremental: driven by `jobs`: each run's rows are read once, when the run is terminal
      (a RUNNING run's partial rows are never loaded), filtered on `_scraperJobStatusId` and
      sorted by `_scrapedAt` then `_id` (stable for a finished run, so `row_index` is too);
      resource state remembers the runs read until `jobs` reads below them (`_prune_done`).
      Columns: the scraper's own fields (typed), `job_id`, `group_id`, `scraper_id`,
      `scraped_at`, `row_index`, and Scrapewise's `_`-metadata.
    * Updates: a finished run's rows do not change; reloading a run replaces all its rows.
    * Deletes: `scrapesync scrapewise delete-run-data` deletes at Scrapewise and then the
      run's rows here. Rows removed at Scrapewise by other means (retention) are not seen.
    * Late-arriving data: a run that ends after the sync is loaded by the sync that sees it.
    """
    done: dict[str, Any] = dlt.current.resource_state().setdefault("done", {})
    _prune_done(done)
    todo = _todo(runs, done, lambda _: True)
    batch: list[dict[str, Any]] = []
    for run, fetched in map_bounded(
        lambda run: _run_rows(client, run, page_size), todo, concurrency
    ):
        done[run["id"]] = _done(run)
        if fetched:
            batch += data_rows(run, fetched)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_rows(
    client: ProviderRESTClient, run: dict[str, Any], page_size: int
) -> list[dict[str, Any]]:
    expected = run.get("itemsQuantity", run.get("successLinks"))
    if expected == 0:
        return []  # nothing was scraped: no request needed
    fetched = fetch_rows(client, run["groupId"], page_size, ROWS_SORT, run["id"])
    if expected is not None and len(fetched) != expected:
        logger.info(
            f"scrapewise run {run['id']}: {len(fetched)} rows, itemsQuantity {expected} "
            "(rows deleted or retained away since the run)"
        )
    return fetched


def scrapers(
    client: ProviderRESTClient, group_ids: list[str], scraper_ids: list[str], concurrency: int
) -> Iterator[list[dict[str, Any]]]:
    """Scrapers with `lastRunState`, `lastRun` and a config summary -> table `scrapers`.

    * Primary key: `id`.
    * Write disposition: merge (delete-insert).
    * Incremental: none: the scraper list is read whole each sync (`/api/scraper/list`, per
      configured group when only groups are configured, then `GET /api/scraper/{id}` for the
      config; both `concurrency` at a time).
    * Updates: every sync rewrites each scraper's row with its current state.
    * Deletes: a scraper missing from the list that an earlier sync loaded is written once
      more, marked `is_deleted`, and then forgotten by the state (its row stays).
    * Late-arriving data: not applicable (a full snapshot each sync).
    """
    state = dlt.current.resource_state().setdefault("seen", {})
    summaries = _scraper_summaries(client, group_ids, scraper_ids, concurrency)
    batch: list[dict[str, Any]] = []
    for summary, full in map_bounded(
        lambda item: get_scraper(client, item["id"]), summaries, concurrency
    ):
        row = scraper_row(summary, full)
        state[row["id"]] = {k: _plain(v) for k, v in row.items()}
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    listed = {summary["id"] for summary in summaries}
    gone = [key for key in state if key not in listed]
    yield batch + [{**state.pop(key), "is_deleted": True} for key in gone]


def _scraper_summaries(
    client: ProviderRESTClient, group_ids: list[str], scraper_ids: list[str], concurrency: int
) -> list[dict[str, Any]]:
    if group_ids and not scraper_ids:
        reads = map_bounded(lambda group: list_scrapers(client, group), group_ids, concurrency)
        listed = [s for _, found in reads for s in found]
    else:
        everything = list_scrapers(client, None)
        wanted = set(scraper_ids) | set(group_ids)
        listed = [
            s
            for s in everything
            if not wanted or s.get("id") in wanted or s.get("groupId") in wanted
        ]
    unique = {s["id"]: s for s in listed if isinstance(s, dict) and s.get("id")}
    return list(unique.values())


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def enriched_rows(
    client: ProviderRESTClient, group_ids: list[str], page_size: int, concurrency: int = 1
) -> Iterator[list[dict[str, Any]]]:
    """Each group's enriched dataset (the `<group>_enriched` sibling) -> table `enriched_rows`.

    * Primary key: (group_id, row_index); merge key `group_id` (the base group).
    * Write disposition: merge (delete-insert): a group's enriched rows are replaced whole.
    * Incremental: the sibling's rows are read each sync (`concurrency` groups at a time) and
      compared with the hash stored in resource state; only a group whose enriched dataset
      changed is rewritten.
    * Updates: a new merge replaces the enriched dataset at Scrapewise, and here.
    * Deletes: a sibling that is emptied or removed deletes the group's rows (hard delete).
    * Late-arriving data: a merge made after a sync lands with the next sync.
    """
    hashes: dict[str, str] = dlt.current.resource_state().setdefault("hashes", {})
    groups = {group["id"]: group for group in list_groups(client) if group.get("id")}
    by_name = {group.get("name"): group for group in groups.values()}
    bases = [
        group
        for group in groups.values()
        if not str(group.get("name", "")).endswith(ENRICHED_SUFFIX)
        and (not group_ids or group["id"] in group_ids)
    ]
    enriched = []
    for group in bases:
        sibling = by_name.get(f"{group.get('name')}{ENRICHED_SUFFIX}")
        if sibling is not None:
            enriched.append((group, sibling))
        elif hashes.pop(group["id"], None) is not None:
            yield [removed_enrichment(group["id"])]
    reads = map_bounded(
        lambda pair: fetch_rows(client, pair[1]["id"], page_size, ENRICHED_ROWS_SORT),
        enriched,
        concurrency,
    )
    for (group, sibling), fetched in reads:
        version = content_hash(fetched)
        if hashes.get(group["id"]) == version:
            continue
        hashes[group["id"]] = version
        yield shape_enriched(group, sibling, fetched, version)
