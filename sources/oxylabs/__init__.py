"""Oxylabs Web Scraper API (push-pull): a crash-safe job ledger, results, and the Scheduler.

API: data.oxylabs.io, described in docs/oxylabs.md. Jobs are submitted in batches of up to
5,000 (`POST /v1/queries/batch`, `scrapesync oxylabs submit`), move `pending -> done |
faulted`, and their results stay downloadable for at least 24 hours. Oxylabs has no endpoint
that lists a user's jobs, so the write-ahead ledger (journal.py), kept in the destination
itself (schema `oxylabs_ledger`), is the source of truth for what was submitted; any worker
continues from it, and each sync mirrors it into the warehouse tables below.

Tables (dataset `oxylabs`):
* `jobs`: the job ledger, one row per job id (merge on `id`).
* `submissions`: one row per submitted batch, with its state (`unknown` ones need a decision).
* `results`: one row per result page, key (job_id, page); raw HTML in `content`, parsed
  results flattened under `parsed__*`.
* `schedules`: Scheduler schedules (ids are int64 above 2^53, kept exact as BIGINT).
* `schedule_runs`: one row per job of each Scheduler run; their done jobs land in `results`.

The package: settings.py (endpoint table, limits, column hints), client.py (HTTP clients,
error parser, rate limiter), resources.py (resource bodies, `connect`), transform.py (pure row
transforms), journal.py / submit.py / collect.py / scheduler.py / callbacks.py (the ledger,
batch submission, collection, Scheduler reads, callback intake), model.py and provider.py
(the package as the shared layers see it), cli.py (`scrapesync oxylabs ...`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.oxylabs.resources import (
    Oxylabs,
    apply_callbacks,
    connect,
    ledger_for,
    post_load,
    sync_jobs,
)
from scrapesync.sources.oxylabs.scheduler import schedule_rows
from scrapesync.sources.oxylabs.settings import (
    BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RESUBMITS,
    DEFAULT_RATELIMIT_WINDOW,
    DEFAULT_REQUESTS_PER_SECOND,
    MERGE,
    SCHEDULES_COLUMNS,
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
    callback_token: TSecretStrValue | None = None,
    stats: RequestStats | None = None,
) -> list[DltResource]:
    """The job ledger, its results, and the Scheduler of one Oxylabs API user.

    Args:
        username: API user name (HTTP Basic auth).
        password: API user password.
        base_url: API root; point it at the sandbox or a proxy.
        journal_path: keep the ledger in this local SQLite file instead of the destination
            (for a destination without SQL; then the file is the only record of job ids).
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
        callback_token: the listener's secret path token; puts the real callback URL back
            into resubmitted batches (the ledger keeps it redacted).
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
        callback_token=callback_token,
    )
    resources = [jobs(ox, max_resubmits, resubmit_613, scheduler)]
    if scheduler:
        resources.append(schedules(ox.reader))
    return resources


# column hints go with each table's rows (`with_hints`): resource-level columns would leak into
# the other tables this resource writes (docs/dlt-behaviours.md, table hints per item)
@dlt.resource(name="jobs", primary_key="id", write_disposition=MERGE)
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
    yield from sync_jobs(ox, max_resubmits, resubmit_613, scheduler)


@dlt.resource(
    name="schedules", primary_key="schedule_id", write_disposition=MERGE, columns=SCHEDULES_COLUMNS
)
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
    yield from schedule_rows(reader, dlt.current.resource_state())


__all__: Sequence[str] = (
    "Oxylabs",
    "apply_callbacks",
    "connect",
    "jobs",
    "ledger_for",
    "oxylabs_source",
    "post_load",
    "schedules",
)
