"""The bodies of the Oxylabs resources, and the connection every sync and CLI action opens.

`__init__.py` wires these into the dlt source; the CLI actions (cli.py) and the callback
intake (callbacks.py) open the same `Oxylabs` bundle through `connect`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.pacing import RateLimiter
from scrapesync.sources.common.statedb import StateDB
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.oxylabs.client import read_client, submit_client
from scrapesync.sources.oxylabs.collect import Collector, Outcome
from scrapesync.sources.oxylabs.journal import LEDGER_SCHEMA, Journal, open_store
from scrapesync.sources.oxylabs.scheduler import scheduled_jobs
from scrapesync.sources.oxylabs.settings import (
    BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_RATELIMIT_WINDOW,
    DEFAULT_REQUESTS_PER_SECOND,
    JOBS_COLUMNS,
    JOURNAL_CHUNK,
    MAX_BATCH,
    MERGE,
    RESULTS_COLUMNS,
    SUBMISSIONS_COLUMNS,
)
from scrapesync.sources.oxylabs.submit import Submitter, failpoint, resolve_from_callbacks
from scrapesync.sources.oxylabs.transform import ledger_row, submission_row


@dataclass
class Oxylabs:
    """Everything one sync or one CLI action needs: journal, clients, submitter, collector."""

    journal: Journal
    reader: ProviderRESTClient
    submitter: Submitter
    collector: Collector
    limiter: RateLimiter


def connect(
    username: str,
    password: str,
    base_url: str = BASE_URL,
    journal_path: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND,
    ratelimit_window: float = DEFAULT_RATELIMIT_WINDOW,
    result_type: str = "auto",
    storage_bucket_url: str | None = None,
    batch_size: int = MAX_BATCH,
    stats: RequestStats | None = None,
    ledger: StateDB | None = None,
    callback_token: str | None = None,
) -> Oxylabs:
    """Open the ledger and build the clients (shared by the source and the CLI actions).

    The ledger is `ledger` (a store in the destination, e.g. `ledger_for(pipeline)`), else the
    local SQLite file `journal_path`, else the destination of the pipeline being run, found
    on first use (the sync's case).
    """
    if not username or not password:
        raise ValueError(
            "oxylabs: set the API user: `sources.oxylabs.username` and `sources.oxylabs.password`"
            " (env SOURCES__OXYLABS__USERNAME / SOURCES__OXYLABS__PASSWORD)"
        )
    stats = stats or RequestStats()
    limiter = RateLimiter.budget(
        requests_per_second,
        per=1.0,
        setting="sources.oxylabs.requests_per_second",
        quota_pause=ratelimit_window,
    )
    journal = Journal(open_store(journal_path, ledger))
    reader = read_client(base_url, username, password, stats, limiter)
    poster = submit_client(base_url, username, password, stats, limiter)
    return Oxylabs(
        journal,
        reader,
        Submitter(journal, poster, batch_size, callback_token),
        Collector(reader, concurrency, result_type, storage_bucket_url),
        limiter,
    )


# -- jobs: the ledger and its collection ----------------------------------------------------
def sync_jobs(
    ox: Oxylabs, max_resubmits: int, resubmit_613: bool, scheduler: bool
) -> Iterator[Any]:
    """One sync of the ledger (the `jobs` resource's body; its docstring tells the order)."""
    state = dlt.current.resource_state()
    load_id = dlt.current.load_package_state()["load_id"]
    # the ledger is in the destination this pipeline loads to (unless a store was given)
    ox.journal.use_pipeline(dlt.current.pipeline())
    # post_load finds a local ledger file here (it gets only the pipeline); a ledger in the
    # destination it derives from the pipeline
    local = ox.journal.db.target if ox.journal.db.kind == "sqlite" else None
    dlt.current.source_state()["journal_path"] = local
    apply_callbacks(ox.journal)
    ox.submitter.resume()
    if scheduler:
        yield from scheduled_jobs(ox.reader, ox.journal)
    yield from collect(ox, load_id)
    if max_resubmits > 0:
        ox.submitter.resubmit_faulted(max_resubmits, resubmit_613)
    yield from ledger_rows(ox.journal, state)
    ox.journal.close()  # dlt's load opens the DuckDB file next


def apply_callbacks(journal: Journal) -> int:
    """Recover lost job ids from callbacks, then flag callback-notified jobs to poll first."""
    resolve_from_callbacks(journal)
    waiting = journal.unapplied_callbacks()
    journal.apply_callbacks([row["job_id"] for row in waiting])
    if waiting:
        logger.info(f"oxylabs: {len(waiting)} callbacks received since the last sync")
    return len(waiting)


def collect(ox: Oxylabs, load_id: str) -> Iterator[Any]:
    """Poll every open job; yield done jobs' pages to `results`; record outcomes in the journal."""
    open_jobs = ox.journal.open_jobs()
    counts = {"pending": 0, "done": 0, "faulted": 0, "expired": 0}
    changes: list[tuple[str, dict[str, Any]]] = []
    for outcome in ox.collector.poll(open_jobs):
        counts[outcome.status] += 1
        if outcome.pages:
            yield dlt.mark.with_hints(
                outcome.pages,
                dlt.mark.make_hints(
                    table_name="results",
                    write_disposition=MERGE,
                    primary_key=("job_id", "page"),
                    columns=RESULTS_COLUMNS,
                ),
                create_table_variant=True,
            )
        change = journal_change(outcome, load_id)
        if change:
            changes.append((outcome.job["job_id"], change))
        if len(changes) >= JOURNAL_CHUNK:
            ox.journal.update_jobs(changes)
            changes = []
        failpoint("during_collection")
    ox.journal.update_jobs(changes)
    _report(counts, len(open_jobs))


def journal_change(outcome: Outcome, load_id: str) -> dict[str, Any] | None:
    """What one poll changes in the journal's job row (None: nothing)."""
    if outcome.status == "pending":
        return None if outcome.job["status"] == "pending" else {"status": "pending"}
    change: dict[str, Any] = {"status": outcome.status}
    if outcome.status == "done":
        change.update(result_pages=len(outcome.pages), collect_load_id=load_id)
    if outcome.finished_at:
        change["finished_at"] = outcome.finished_at
    if outcome.status == "faulted":
        change.update(fault_code=outcome.fault_code, fault_reason=outcome.fault_reason)
    return change


def _report(counts: dict[str, int], polled: int) -> None:
    metrics = dlt.current.resource_metrics()
    for status, count in counts.items():
        metrics[f"jobs:{status}"] = count
    logger.info(f"oxylabs: polled {polled} open jobs: {counts}")
    if counts["expired"]:
        logger.warning(
            f"oxylabs: the results of {counts['expired']} jobs expired before they were "
            "collected (Oxylabs keeps them >= 24 h) and are lost: sync more often than daily, "
            "or submit with storage_type/storage_url"
        )


def ledger_rows(journal: Journal, state: dict[str, Any]) -> Iterator[Any]:
    """Jobs and batches changed since the last sync (journal change counter > watermark)."""
    since = int(state.get("journal_version", 0))
    changed = journal.changed_since(since)
    batches = journal.query("SELECT * FROM batches WHERE version > ?", (since,))
    newest = max([since] + [r["version"] for r in changed] + [b["version"] for b in batches])
    if changed:
        yield dlt.mark.with_hints(
            [ledger_row(row) for row in changed],
            dlt.mark.make_hints(
                table_name="jobs", write_disposition=MERGE, primary_key="id", columns=JOBS_COLUMNS
            ),
            create_table_variant=True,
        )
    if batches:
        yield dlt.mark.with_hints(
            [submission_row(b) for b in batches],
            dlt.mark.make_hints(
                table_name="submissions",
                write_disposition=MERGE,
                primary_key="batch_id",
                columns=SUBMISSIONS_COLUMNS,
            ),
            create_table_variant=True,
        )
    state["journal_version"] = newest


# -- after the load -------------------------------------------------------------------------
def ledger_for(pipeline: dlt.Pipeline) -> StateDB:
    """The ledger in `pipeline`'s destination (schema `oxylabs_ledger`)."""
    return StateDB.for_pipeline(pipeline, LEDGER_SCHEMA)


def post_load(pipeline: dlt.Pipeline) -> int:
    """Mark jobs whose results are in a completed load as collected (never fetched again)."""
    local = pipeline.state.get("sources", {}).get("oxylabs", {}).get("journal_path")
    journal = Journal(open_store(local, None if local else ledger_for(pipeline)))
    try:
        return _mark_collected(pipeline, journal)
    finally:
        journal.close()  # the file is free for the next step (DuckDB: one writer process)


def _mark_collected(pipeline: dlt.Pipeline, journal: Journal) -> int:
    pending = journal.uncollected_load_ids()
    if not pending:
        return 0
    # load ids are dlt's numeric strings; nothing else is interpolated into the SQL
    marks = ", ".join(f"'{load_id}'" for load_id in pending if load_id.replace(".", "").isdigit())
    if not marks:
        return 0
    with pipeline.sql_client() as client:
        loads = client.make_qualified_table_name("_dlt_loads")
        rows = client.execute_sql(
            f"SELECT load_id FROM {loads} WHERE status = 0 AND load_id IN ({marks})"
        )
    return journal.mark_collected([str(row[0]) for row in rows or []])
