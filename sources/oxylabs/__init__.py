"""Oxylabs Web Scraper API (push-pull): a crash-safe job ledger, results, and the Scheduler.

API: data.oxylabs.io (shared/api-docs/003_5eeb3e2c2bad4c24.txt, api-notes.md §4). Jobs are
submitted in batches of up to 5,000 (`POST /v1/queries/batch`, `scrapesync oxylabs submit`),
move `pending -> done | faulted`, and their results stay downloadable for at least 24 hours.
Oxylabs has no endpoint that lists a user's jobs, so the local journal (journal.py) is the
source of truth for what was submitted; each sync mirrors it into the warehouse.

Tables (dataset `oxylabs`):
* `jobs`: the job ledger, one row per job id (merge on `id`).
* `submissions`: one row per submitted batch, with its state (`unknown` ones need a decision).
* `results`: one row per result page, key (job_id, page); raw HTML in `content`, parsed
  results flattened under `parsed__*`.
* `schedules`: Scheduler schedules (ids are int64 above 2^53, kept exact as BIGINT).
* `schedule_runs`: one row per job of each Scheduler run; their done jobs land in `results`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import orjson
from dlt.common import logger
from dlt.sources import DltResource

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.oxylabs.client import RateLimiter, read_client, submit_client
from scrapesync.sources.oxylabs.collect import Collector, Outcome, oxylabs_time
from scrapesync.sources.oxylabs.journal import Journal
from scrapesync.sources.oxylabs.scheduler import schedule_rows, scheduled_jobs
from scrapesync.sources.oxylabs.settings import (
    BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RESUBMITS,
    DEFAULT_RATELIMIT_WINDOW,
    DEFAULT_REQUESTS_PER_SECOND,
    MAX_BATCH,
)
from scrapesync.sources.oxylabs.submit import Submitter, failpoint, resolve_from_callbacks

MERGE: Any = {"disposition": "merge", "strategy": "delete-insert"}
JOBS_COLUMNS: dict[str, Any] = {
    "id": {"data_type": "text"},
    "query": {"data_type": "text"},
    "url": {"data_type": "text"},
    "source": {"data_type": "text"},
    "callback_at": {"data_type": "timestamp"},
    "submitted_at": {"data_type": "timestamp"},
    "finished_at": {"data_type": "timestamp"},
    "fault_reason": {"data_type": "text"},
    "result_pages": {"data_type": "bigint"},
    "resubmitted_as": {"data_type": "text"},
    "params": {"data_type": "json"},
    "fault_code": {"data_type": "bigint"},
    "_version": {"data_type": "bigint", "dedup_sort": "desc"},
}
RESULTS_COLUMNS: dict[str, Any] = {
    "job_id": {"data_type": "text"},
    "page": {"data_type": "bigint"},
    "content": {"data_type": "text"},
    "status_code": {"data_type": "bigint"},
    "query": {"data_type": "text"},
    "source": {"data_type": "text"},
    "parser_type": {"data_type": "text"},
}
RUNS_COLUMNS: dict[str, Any] = {
    "schedule_id": {"data_type": "bigint"},
    "run_id": {"data_type": "bigint"},
    "job_id": {"data_type": "text"},
    "result_created_at": {"data_type": "timestamp"},
}
SUBMISSIONS_COLUMNS: dict[str, Any] = {
    "params": {"data_type": "json"},
    "note": {"data_type": "text"},
    "sent_at": {"data_type": "timestamp"},
    "answered_at": {"data_type": "timestamp"},
}
SCHEDULES_COLUMNS: dict[str, Any] = {
    "schedule_id": {"data_type": "bigint"},
    "_deleted": {"data_type": "bool", "hard_delete": True},
}


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
) -> Oxylabs:
    """Open the journal and build the clients (shared by the source and the CLI actions)."""
    if not username or not password:
        raise ValueError(
            "oxylabs: set the API user: `sources.oxylabs.username` and `sources.oxylabs.password`"
            " (env SOURCES__OXYLABS__USERNAME / SOURCES__OXYLABS__PASSWORD)"
        )
    stats = stats or RequestStats()
    limiter = RateLimiter(requests_per_second, ratelimit_window)
    journal = Journal(journal_path)
    reader = read_client(base_url, username, password, stats, limiter)
    poster = submit_client(base_url, username, password, stats, limiter)
    return Oxylabs(
        journal,
        reader,
        Submitter(journal, poster, batch_size),
        Collector(reader, concurrency, result_type, storage_bucket_url),
        limiter,
    )


@dlt.source(name="oxylabs")
def oxylabs_source(
    username: str = dlt.secrets.value,
    password: str = dlt.secrets.value,
    base_url: str = BASE_URL,
    journal_path: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND,
    ratelimit_window: float = DEFAULT_RATELIMIT_WINDOW,
    result_type: str = "auto",
    max_resubmits: int = DEFAULT_MAX_RESUBMITS,
    resubmit_613: bool = False,
    storage_bucket_url: str | None = None,
    scheduler: bool = True,
    stats: RequestStats | None = None,
) -> list[DltResource]:
    """The job ledger, its results, and the Scheduler of one Oxylabs API user.

    Args:
        username: API user name (HTTP Basic auth).
        password: API user password.
        base_url: API root; point it at the sandbox or a proxy.
        journal_path: the local journal file (default `<dlt data dir>/scrapesync/oxylabs/
            journal.sqlite`; keep it on durable storage: it is the only record of job ids).
        concurrency: jobs polled / downloaded at once.
        requests_per_second: ceiling of this sync's request rate (all endpoints).
        ratelimit_window: seconds to pause when an `x-ratelimit-*-remaining` header hits 0.
        result_type: `auto` (parsed when the job was parsed, else raw), `raw` or `parsed`.
        max_resubmits: automatic new attempts of a faulted job (0: only on request); jobs
            that faulted with 613 "too many retries" are not resubmitted unless `resubmit_613`.
        resubmit_613: also resubmit jobs that faulted with 613.
        storage_bucket_url: where jobs submitted with `storage_type`/`storage_url` are read
            (`<bucket>/<job_id>.json`), any fsspec URL dlt supports; default: `storage_url`.
        scheduler: also sync `schedules` and `schedule_runs` (and collect their jobs).
        stats: request counters to fill (the runner passes one).
    """
    ox = connect(
        username,
        password,
        base_url,
        journal_path,
        concurrency,
        requests_per_second,
        ratelimit_window,
        result_type,
        storage_bucket_url,
        stats=stats,
    )
    # column hints go with each table's rows (`with_hints`): resource-level columns would
    # leak into the other tables this resource writes
    ledger = dlt.resource(jobs, name="jobs", primary_key="id", write_disposition=MERGE)
    resources = [ledger(ox, max_resubmits, resubmit_613, scheduler)]
    if scheduler:
        listed = dlt.resource(
            schedules,
            name="schedules",
            primary_key="schedule_id",
            write_disposition=MERGE,
            columns=SCHEDULES_COLUMNS,
        )
        resources.append(listed(ox.reader))
    return resources


def jobs(ox: Oxylabs, max_resubmits: int, resubmit_613: bool, scheduler: bool) -> Iterator[Any]:
    """The job ledger (`jobs`, `submissions`) and its collection (`results`, `schedule_runs`).

    One sync, in order: callbacks received since the last sync are applied (and recover job ids
    of batches whose answer was lost); Scheduler runs register their jobs; every open job is
    polled (callback-notified first) and done jobs' pages are downloaded; faulted jobs get a new
    attempt (up to `max_resubmits`); the ledger rows changed since the last sync are emitted.

    * Primary key: `jobs`: id (the 19-digit job id, text); `submissions`: batch_id;
      `results`: (job_id, page); `schedule_runs`: (schedule_id, run_id, job_id).
    * Write disposition: merge (delete-insert) for all four; `_version` (the journal's change
      counter) sorts duplicates of a job, the newest wins.
    * Incremental cursor: the journal's change counter (`_version`, resource state): only jobs
      and batches changed since the last sync are emitted. Results are not incremental: each
      open job is polled until it is terminal, then never again.
    * Updates: a job's row is replaced on every change (pending -> done | faulted | expired |
      resubmitted); result pages never change once done.
    * Deletes: none: Oxylabs never deletes a job; expired results stay in `results` (they are
      the only copy left) and the job is marked `expired`.
    * Late-arriving data: a job that finishes after this sync stays `pending` and is polled
      again next sync (or first, when its callback arrived); a callback that arrives late or
      twice is harmless (stored once, idempotent).
    """
    state = dlt.current.resource_state()
    load_id = dlt.current.load_package_state()["load_id"]
    # post_load finds the journal here (it gets only the pipeline)
    dlt.current.source_state()["journal_path"] = str(ox.journal.path)
    apply_callbacks(ox.journal)
    ox.submitter.resume()
    if scheduler:
        yield from scheduled_jobs(ox.reader, ox.journal, RUNS_COLUMNS)
    yield from collect(ox, load_id)
    if max_resubmits > 0:
        ox.submitter.resubmit_faulted(max_resubmits, resubmit_613)
    yield from ledger_rows(ox.journal, state)


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
        change = _journal_change(outcome, load_id)
        if change:
            changes.append((outcome.job["job_id"], change))
        if len(changes) >= 500:
            ox.journal.update_jobs(changes)
            changes = []
        failpoint("during_collection")
    ox.journal.update_jobs(changes)
    _report(counts, len(open_jobs))


def _journal_change(outcome: Outcome, load_id: str) -> dict[str, Any] | None:
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


def ledger_row(row: dict[str, Any]) -> dict[str, Any]:
    params = orjson.loads(row["params"] or "{}")
    return {
        "id": row["job_id"],
        "status": row["status"],
        "query": row["value"] if row["kind"] == "query" else None,
        "url": row["value"] if row["kind"] == "url" else None,
        "source": params.get("source"),
        "params": params,
        "origin": row["origin"],
        "fingerprint": row["fingerprint"],
        "attempt": row["attempt"],
        "batch_id": row["batch_id"],
        "fault_code": row["fault_code"],
        "fault_reason": row["fault_reason"],
        "result_pages": row["result_pages"],
        "submitted_at": row["submitted_at"],
        "finished_at": oxylabs_time(row["finished_at"]),
        "callback_at": row["callback_at"],
        "resubmitted_as": row["resubmitted_as"],
        "_version": row["version"],
    }


def submission_row(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_id": batch["batch_id"],
        "state": batch["state"],
        "kind": batch["kind"],
        "size": batch["size"],
        "params": orjson.loads(batch["params"] or "{}"),
        "created_at": batch["created_at"],
        "sent_at": batch["sent_at"],
        "answered_at": batch["answered_at"],
        "note": batch["note"],
    }


def schedules(reader: ProviderRESTClient) -> Iterator[Any]:
    """Scheduler schedules (`/v1/schedules`, `/v1/schedules/{id}` with stats) -> `schedules`.

    * Primary key: schedule_id (int64 above 2^53, decoded with orjson as an exact Python int,
      stored as BIGINT).
    * Write disposition: merge (delete-insert).
    * Incremental cursor: none: the list holds ids only, every schedule is read each sync.
    * Updates: active flag, next run and stats are replaced each sync.
    * Deletes: a schedule no longer listed is removed (`_deleted` hard-delete hint).
    * Late-arriving data: not applicable (the current state is read each sync).
    """
    state = dlt.current.resource_state()
    yield from schedule_rows(reader, state)


def post_load(pipeline: dlt.Pipeline) -> int:
    """Mark jobs whose results are in a completed load as collected (never fetched again)."""
    path = pipeline.state.get("sources", {}).get("oxylabs", {}).get("journal_path")
    if not path or not Path(path).exists():
        return 0
    journal = Journal(path)
    try:
        pending = journal.uncollected_load_ids()
        if not pending:
            return 0
        # load ids are dlt's numeric strings; nothing else is interpolated into the SQL
        marks = ", ".join(
            f"'{load_id}'" for load_id in pending if load_id.replace(".", "").isdigit()
        )
        if not marks:
            return 0
        with pipeline.sql_client() as client:
            loads = client.make_qualified_table_name("_dlt_loads")
            rows = client.execute_sql(
                f"SELECT load_id FROM {loads} WHERE status = 0 AND load_id IN ({marks})"
            )
        return journal.mark_collected([str(row[0]) for row in rows or []])
    finally:
        journal.close()


__all__: Sequence[str] = ("Oxylabs", "connect", "oxylabs_source", "post_load")
