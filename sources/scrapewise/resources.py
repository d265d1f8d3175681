"""The bodies of the Scrapewise resources (wired with their hints in `scrapewise_source`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from typing import Any, TypeVar

import dlt
import pendulum
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
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
    ScopeMark,
    log_inconsistent,
    read_pass,
)
from scrapesync.sources.scrapewise.settings import (
    ACTIVE_STATES,
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

T = TypeVar("T")
R = TypeVar("R")


def jobs(
    client: ProviderRESTClient,
    scopes: list[Scope],
    page_size: int,
    start: pendulum.DateTime | None,
    with_deleted: bool,
) -> Iterator[list[dict[str, Any]]]:
    """Scraper runs (`GET /api/scraper/load-history`) -> table `jobs`.

    * Primary key: `id` (the run's ObjectId).
    * Write disposition: merge (delete-insert): a re-read run replaces its row.
    * Incremental: newest first (`sort=started,desc`) per scope (all runs, or each configured
      group and scraper), stopping at the first run older than the scope's watermark (the
      newest `started` seen); `start_date` bounds the first read. See `history.py` for why
      this is not `dlt.sources.incremental`.
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
    floors = {scope.key: _floor(scope, marks, was_open, start) for scope in scopes}
    yielded: set[str] = set()
    unsettled: list[Scope] = []  # scopes whose read did not add up: nothing there is gone
    for scope in scopes:
        mark = ScopeMark.load(marks.get(scope.key))
        seen = Pass(floors[scope.key])
        pages = read_pass(client, scope, seen.floor, page_size, with_deleted, seen)
        yield from _fresh(pages, yielded, open_runs)
        if not mark.consistent(seen):
            log_inconsistent(scope, seen, mark)
            seen = Pass(start)
            pages = read_pass(client, scope, start, page_size, with_deleted, seen)
            yield from _fresh(pages, yielded, open_runs)
            if not ScopeMark().consistent(seen):
                logger.warning(f"scrapewise jobs {scope.key}: still moving; read again next sync")
                unsettled.append(scope)
                continue
            reconciled[scope.key] = {
                "filters": dict(scope.filters),
                # asked only here: the load package exists only inside a pipeline's extract
                "load_id": dlt.current.load_package_state()["load_id"],
                "since": iso_z(start) if start else None,
            }
        marks[scope.key] = mark.advanced(seen).dump()
    settled = [scope for scope in scopes if scope not in unsettled]
    yield from _vanished(was_open, open_runs, yielded, settled, unsettled)


def _floor(
    scope: Scope,
    marks: dict[str, Any],
    open_runs: dict[str, dict[str, Any]],
    start: pendulum.DateTime | None,
) -> pendulum.DateTime | None:
    started = [timestamp(run.get("started")) for run in open_runs.values() if scope.matches(run)]
    return ScopeMark.load(marks.get(scope.key)).floor([s for s in started if s], start)


def _fresh(
    pages: Iterator[list[dict[str, Any]]],
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
    for run_id, run in was_open.items():
        if run_id in yielded or any(scope.matches(run) for scope in unsettled):
            continue
        open_runs.pop(run_id, None)
        if any(scope.matches(run) for scope in settled):
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


def job_errors(
    runs: list[dict[str, Any]], client: ProviderRESTClient, concurrency: int
) -> Iterator[list[dict[str, Any]]]:
    """Failed links of each terminal run -> table `job_errors`.

    * Primary key: (job_id, url).
    * Write disposition: merge (delete-insert).
    * Incremental: driven by `jobs`: a run's links are read once, when it is first seen
      terminal with `errorLinks > 0`; resource state remembers the runs already read. Runs
      are fetched `concurrency` at a time through the one retrying client.
    * Updates: none expected (a terminal run's links are final); a re-read replaces rows.
    * Deletes: links stay when a run is soft-deleted (the run is marked in `jobs`).
    * Late-arriving data: a run that ends after the sync is read by the sync that sees it end.
    """
    done: dict[str, Any] = dlt.current.resource_state().setdefault("done", {})
    todo = _todo(runs, done, lambda run: (run.get("errorLinks") or 0) > 0)
    for run in _todo(runs, done, lambda run: not run.get("errorLinks")):
        done[run["id"]] = 1  # no failed links: nothing to ask for
    for run, links in bounded_map(lambda run: fetch_errors(client, run), todo, concurrency):
        done[run["id"]] = 1
        if links:
            yield error_rows(run, links)


def rows(
    runs: list[dict[str, Any]], client: ProviderRESTClient, page_size: int, concurrency: int
) -> Iterator[list[dict[str, Any]]]:
    """Scraped rows of each terminal run (`GET /api/scraper/data/group/{id}`) -> table `rows`.

    * Primary key: (job_id, row_index); merge key `job_id`: a run's rows load as one unit.
    * Write disposition: merge (delete-insert).
    * Incremental: driven by `jobs`: each run's rows are read once, when the run is terminal
      (a RUNNING run's partial rows are never loaded), filtered on `_scraperJobStatusId` and
      sorted by `_scrapedAt` then `_id` (stable for a finished run, so `row_index` is too).
      Columns: the scraper's own fields (typed), `job_id`, `group_id`, `scraper_id`,
      `scraped_at`, `row_index`, and Scrapewise's `_`-metadata.
    * Updates: a finished run's rows do not change; reloading a run replaces all its rows.
    * Deletes: `scrapesync scrapewise delete-run-data` deletes at Scrapewise and then the
      run's rows here. Rows removed at Scrapewise by other means (retention) are not seen.
    * Late-arriving data: a run that ends after the sync is loaded by the sync that sees it.
    """
    done: dict[str, Any] = dlt.current.resource_state().setdefault("done", {})
    todo = _todo(runs, done, lambda _: True)
    for run, fetched in bounded_map(
        lambda run: _run_rows(client, run, page_size), todo, concurrency
    ):
        done[run["id"]] = 1
        if fetched:
            yield data_rows(run, fetched)


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
    * Incremental: none: the scraper list is small and read whole each sync
      (`/api/scraper/list`, then `GET /api/scraper/{id}` for the config, concurrently).
    * Updates: every sync rewrites each scraper's row with its current state.
    * Deletes: a scraper missing from the list that an earlier sync loaded is kept and
      marked `is_deleted`.
    * Late-arriving data: not applicable (a full snapshot each sync).
    """
    state = dlt.current.resource_state().setdefault("seen", {})
    summaries = _scraper_summaries(client, group_ids, scraper_ids)
    current = []
    for summary, full in bounded_map(
        lambda item: get_scraper(client, item["id"]), summaries, concurrency
    ):
        row = scraper_row(summary, full)
        state[row["id"]] = {k: _plain(v) for k, v in row.items()}
        current.append(row)
    listed = {summary["id"] for summary in summaries}
    gone = [{**row, "is_deleted": True} for key, row in state.items() if key not in listed]
    yield current + gone


def _scraper_summaries(
    client: ProviderRESTClient, group_ids: list[str], scraper_ids: list[str]
) -> list[dict[str, Any]]:
    if group_ids and not scraper_ids:
        listed = [s for group in group_ids for s in list_scrapers(client, group)]
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
    client: ProviderRESTClient, group_ids: list[str], page_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Each group's enriched dataset (the `<group>_enriched` sibling) -> table `enriched_rows`.

    * Primary key: (group_id, row_index); merge key `group_id` (the base group).
    * Write disposition: merge (delete-insert): a group's enriched rows are replaced whole.
    * Incremental: the sibling's rows are read each sync and compared with the hash stored in
      resource state; only a group whose enriched dataset changed is rewritten.
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
    for group in bases:
        sibling = by_name.get(f"{group.get('name')}{ENRICHED_SUFFIX}")
        if sibling is None:
            if hashes.pop(group["id"], None) is not None:
                yield [removed_enrichment(group["id"])]
            continue
        fetched = fetch_rows(client, sibling["id"], page_size, ENRICHED_ROWS_SORT)
        version = content_hash(fetched)
        if hashes.get(group["id"]) == version:
            continue
        hashes[group["id"]] = version
        yield shape_enriched(group, sibling, fetched, version)


def bounded_map(func: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[tuple[T, R]]:
    """`(item, func(item))` for every item, at most `workers` calls at once, as they finish.

    One worker runs in the calling thread (no pool), so `workers=1` is the plain sequential
    loop the benchmark compares against. The first failure cancels what has not started and
    is raised: the extract fails as a whole and no state advances.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield item, func(item)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = {pool.submit(func, item): item for item in items}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()
