"""Run one provider's sync: finish what an interrupted run left, load new data, report.

Contract relied on by users' schedulers and by the tests:
* dlt pipeline `scrapesync_<provider>`, dataset `<provider>`, working dir under dlt's data dir
  (`DLT_DATA_DIR` moves it);
* DuckDB file `scrapesync.duckdb` in the working directory unless dlt's own setting
  `destination.duckdb.credentials` (env `DESTINATION__DUCKDB__CREDENTIALS`) names another.
"""

from __future__ import annotations

import copy
import inspect
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
from dlt.common import logger
from dlt.common.configuration.container import Container
from dlt.common.configuration.exceptions import ValueNotSecretException
from dlt.common.configuration.specs.config_section_context import ConfigSectionContext
from dlt.common.destination import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.destinations.exceptions import DestinationConnectionError
from dlt.destinations.impl.duckdb.configuration import DuckDbBaseCredentials, DuckDbCredentials
from dlt.pipeline.exceptions import PipelineStepFailed

from scrapesync.pipelines.lease import LeaseHeldError, acquire
from scrapesync.pipelines.metrics import custom_metrics, record_sync
from scrapesync.pipelines.report import SyncReport, TableReport
from scrapesync.pipelines.warehouse import DestinationUnavailableError, hold_destination
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.common.partitions import Shard
from scrapesync.sources.common.provider import Provider, merge_tables, setting
from scrapesync.sources.common.redact import (
    redact,
    register_run_secrets,
    register_setting_secrets,
)
from scrapesync.sources.common.statedb import release_duckdb_connections

PIPELINE_PREFIX = "scrapesync_"
DEFAULT_DUCKDB_FILE = "scrapesync.duckdb"
# `preserve_insertion_order` off lets DuckDB insert and window without buffering rows in
# arrival order (no query of dlt's relies on it: its merge orders explicitly); with it on, the
# deduplicating merge of a 1M-row load ran out of the 80 MB budget instead of spilling
DUCKDB_DEFAULTS: dict[str, Any] = {
    "memory_limit": "80MB",
    "threads": 1,
    "preserve_insertion_order": False,
}
# DuckDB's names for each of those settings
_DUCKDB_ALIASES = {
    "memory_limit": {"memory_limit", "max_memory"},
    "threads": {"threads", "worker_threads"},
    "preserve_insertion_order": {"preserve_insertion_order"},
}
# the setting a `SET [GLOBAL|SESSION] x ...` statement or a `x = ...` pragma names
_SETTING_NAME = re.compile(
    r"^\s*(?:(?:SET|PRAGMA)\s+(?:(?:GLOBAL|SESSION|LOCAL)\s+)?)?([A-Za-z_]+)", re.IGNORECASE
)
# DuckDB credentials fields copied as configured (the database is passed on its own)
_DUCKDB_FIELDS = tuple(
    name
    for name in DuckDbBaseCredentials.__dataclass_fields__
    if not name.startswith("_") and name != "conn_pool"
)


class SyncError(Exception):
    """A sync that failed, with what the user should do about it."""


@dataclass
class NotRunReport(SyncReport):
    """A sync that did not start: another run held the provider's lease for the whole wait."""


def destination_for(name: Any, read_only: bool = False, pipeline_name: str | None = None) -> Any:
    """`name` as a dlt destination; plain `duckdb` defaults to ./scrapesync.duckdb.

    `read_only` opens a DuckDB file read-only (`scrapesync status`), configured or default.

    Every DuckDB file gets a bounded memory budget (`DUCKDB_DEFAULTS`), however it is chosen:
    the default file, or `destination.duckdb.credentials` as a path or a table (env
    `DESTINATION__DUCKDB__CREDENTIALS`, `.dlt/secrets.toml` or `.dlt/config.toml`). DuckDB
    otherwise takes up to 80% of RAM for the merge of a large load, spilling to disk beyond the
    budget instead (docs/dlt-behaviours.md, "DuckDB memory and threads"). A setting the user
    gave DuckDB (`memory_limit` or `threads` in the credentials' `global_config`,
    `local_config`, `pragmas` or `statements`) is kept, and so is everything else configured.
    `pipeline_name` also reads the pipeline's own keys (`[<pipeline_name>.destination.duckdb]`).
    """
    if name != "duckdb":
        return name
    credentials = _configured_duckdb_credentials(pipeline_name)
    if credentials is None:
        credentials = DuckDbCredentials(str(Path.cwd() / DEFAULT_DUCKDB_FILE))
    budgeted = with_memory_budget(credentials)
    budgeted.read_only = read_only or bool(credentials.read_only)
    return dlt.destinations.duckdb(credentials=budgeted)


def with_memory_budget(credentials: DuckDbCredentials) -> DuckDbCredentials:
    """Fresh (unresolved) credentials like `credentials`, with each `DUCKDB_DEFAULTS` setting
    the user did not set added to `global_config` (dlt runs it on every connection it opens).

    Fresh, because dlt takes resolved credentials passed to a destination as they are, without
    opening their connection pool.
    """
    fresh = DuckDbCredentials(credentials.database)
    for field in _DUCKDB_FIELDS:
        setattr(fresh, field, copy.deepcopy(getattr(credentials, field)))
    ours = set(DUCKDB_DEFAULTS) - duckdb_settings_set(credentials)
    if ours:
        fresh.global_config = {
            **{key: DUCKDB_DEFAULTS[key] for key in sorted(ours)},
            **(credentials.global_config or {}),
        }
    return fresh


def duckdb_settings_set(credentials: DuckDbCredentials) -> set[str]:
    """Which of DuckDB's memory settings (`DUCKDB_DEFAULTS` names) the credentials set."""
    named = {str(key).lower() for key in (credentials.global_config or {})}
    named |= {str(key).lower() for key in (credentials.local_config or {})}
    for sql in [*(credentials.pragmas or []), *(credentials.statements or [])]:
        for statement in sql.split(";"):
            named |= {match.lower() for match in _SETTING_NAME.findall(statement)}
    return {setting for setting, aliases in _DUCKDB_ALIASES.items() if named & aliases}


def _configured_duckdb_credentials(pipeline_name: str | None = None) -> DuckDbCredentials | None:
    """The credentials `destination.duckdb.credentials` configures, resolved as dlt does (a
    path, a connection string or a table, plus `...__GLOBAL_CONFIG`-style keys); None when
    nothing names a DuckDB database."""
    configured = _configured_duckdb(pipeline_name)
    if configured is None:
        return None
    if _configured_database(configured).startswith(":"):
        # `:pipeline:` is placed by dlt inside the pipeline's context only: taken as it is
        return _credentials_from_value(configured)
    try:
        target: Any = dlt.destinations.duckdb()
        initial = target.spec()
        initial.dataset_name = "scrapesync"  # required by the spec; not used here
        # the pipeline's section, as dlt resolves it inside the pipeline's own steps
        with Container().injectable_context(ConfigSectionContext(pipeline_name=pipeline_name)):
            credentials: DuckDbCredentials = target.configuration(initial).credentials
        return credentials
    except ValueNotSecretException:
        # dlt reads credentials from secret providers only; the runner passes them explicitly,
        # so a `[destination.duckdb]` entry in config.toml works too
        return _credentials_from_value(configured)


def _configured_database(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(dict(value).get("database") or "")


def _credentials_from_value(value: Any) -> DuckDbCredentials:
    """Credentials from a configured value: a path or connection string, or a table."""
    if isinstance(value, str):
        return DuckDbCredentials(value)
    fields = dict(value)
    credentials = DuckDbCredentials(str(fields.get("database") or DEFAULT_DUCKDB_FILE))
    for field in _DUCKDB_FIELDS:
        if field in fields:
            setattr(credentials, field, fields[field])
    return credentials


def _configured_duckdb(pipeline_name: str | None = None) -> Any:
    key = "destination.duckdb.credentials"
    keys = [f"{pipeline_name}.{key}", key] if pipeline_name else [key]
    for name in keys:
        value: Any = dlt.secrets.get(name) or dlt.config.get(name)
        if value is not None:
            return value
    return None


def pipeline_for(
    provider: str,
    destination: Any = "duckdb",
    progress: bool = False,
    pipelines_dir: str | None = None,
) -> dlt.Pipeline:
    """The dlt pipeline of one provider (same name, dataset and destination every run)."""
    extra: dict[str, Any] = {}
    if progress:
        extra["progress"] = dlt.progress.log(5.0, logger=sys.stderr, dump_system_stats=False)
    name = f"{PIPELINE_PREFIX}{provider}"
    return dlt.pipeline(
        pipeline_name=name,
        destination=destination_for(destination, pipeline_name=name),
        dataset_name=provider,
        pipelines_dir=pipelines_dir,  # type: ignore[arg-type]
        **extra,
    )


def sync(
    provider: Provider,
    destination: Any = "duckdb",
    full_refresh: bool = False,
    discard_pending: bool = False,
    progress: bool = False,
    source_options: dict[str, Any] | None = None,
    pipelines_dir: str | None = None,
    shard: str | Shard | None = None,
) -> SyncReport:
    """Sync one provider; never raises for a failed sync (the report says what failed).

    Args:
        provider: the registry entry to sync.
        destination: a dlt destination name (or instance); `duckdb` is ./scrapesync.duckdb.
        full_refresh: drop the provider's tables and state first, then load everything.
        discard_pending: give up load packages an earlier sync could not load.
        progress: log dlt's progress counters to stderr while it runs.
        source_options: explicit source arguments (beat config files and env vars).
        pipelines_dir: dlt working directory (default: dlt's data dir).
        shard: `"i/N"`: sync only the partitions shard i of N owns (default: the source
            option or setting `sources.<provider>.shard`; none: all). Shards of one provider
            run at the same time, each with its own run lease and working dir
            (docs/scale-out.md).
    """
    report = SyncReport(provider.name)
    started = time.monotonic()
    pipeline: dlt.Pipeline | None = None
    # every configured secret is known (and every log line redacted) before a request is sent
    register_run_secrets(source_options)
    register_setting_secrets(f"sources.{provider.name}", provider.required, setting)
    with ExitStack() as lease:  # held until the sync is recorded
        lease.callback(release_duckdb_connections)  # no connection outlives the sync
        try:
            options = dict(source_options or {})
            part = shard_of(provider, shard, options, full_refresh)
            if part is not None:
                options["shard"] = str(part)
                pipelines_dir = shard_pipelines_dir(provider.name, part, pipelines_dir)
            lease.enter_context(run_lease(provider.name, destination, shard=part))
            pipeline = pipeline_for(provider.name, destination, progress, pipelines_dir)
            _run(pipeline, provider, report, full_refresh, discard_pending, options)
        except LeaseHeldError as exc:
            return not_run(report, exc, started)
        except DestinationUnavailableError as exc:
            report.ok, report.error = False, describe_unavailable(provider.name, destination, exc)
            pipeline = None  # a destination that cannot be opened cannot record the failure
        except SyncError as exc:
            report.ok, report.error = False, str(exc)
        except PipelineStepFailed as exc:
            report.ok, report.error = False, describe_failure(provider.name, exc)
        except (ProviderAPIError, ValueError) as exc:
            report.ok, report.error = False, str(exc)
        # the printed report and `scrapesync.sync_runs.error` never hold a secret
        report.error = redact(report.error) if report.error is not None else None
        report.seconds = time.monotonic() - started
        # scrape_runs, completeness checks and sync_runs (pipelines/metrics.py); never raises
        record_sync_held(pipeline, provider, report)
    return report


def shard_of(
    provider: Provider, shard: str | Shard | None, options: dict[str, Any], full_refresh: bool
) -> Shard | None:
    """The shard this sync runs: the argument, else the source option, else the setting.

    Raises:
        SyncError: the provider cannot be sharded, or a full refresh was asked of a shard.
        ValueError: the text is not `i/N`.
    """
    key = f"sources.{provider.name}.shard"
    if shard is None:
        shard = options.get("shard") or setting(key)
    part = Shard.parse(shard, key)
    if part is None:
        return None
    if "shard" not in inspect.signature(provider.source).parameters:
        raise SyncError(
            f"{provider.name}: cannot be synced in shards (its source has no `shard` "
            f"argument); run it without `--shard` / `{key}`"
        )
    if full_refresh:
        # a refresh drops the provider's tables, which every other shard is loading into
        raise SyncError(
            f"{provider.name}: --full-refresh drops the tables of every shard; run it once "
            f"without a shard (shard {part} was asked), then run the shards again"
        )
    return part


def shard_pipelines_dir(provider: str, shard: Shard, pipelines_dir: str | None) -> str:
    """A working dir of the shard's own under `pipelines_dir` (default: dlt's).

    Shards run as processes of one machine at the same time (e.g. Dagster's multiprocess
    executor): in one working dir they would load, or discard, each other's packages. The
    pipeline keeps its name (and so its dataset and its state in the destination).
    """
    base = pipelines_dir or get_dlt_pipelines_dir()
    return str(Path(base) / "shards" / f"{provider}-{shard.index}-of-{shard.count}")


def lease_key(provider: str, shard: Shard | None) -> str:
    """The run lease's key: the provider, or one shard of it (`<provider>[1/3]`), so that the
    shards of a run exclude only another run of the same shard."""
    return provider if shard is None else f"{provider}[{shard}]"


@contextmanager
def run_lease(
    provider: str, destination: Any, purpose: str = "sync", shard: Shard | None = None
) -> Iterator[None]:
    """Hold the provider's run lease (pipelines/lease.py), or its `shard`'s, for the block.

    The lease is taken through a pipeline object of its own, in a throwaway working dir: runs
    sharing one data dir would race to create the provider's working dir, and the sync builds
    its own pipeline inside the lease, so it reads that dir as the previous holder left it.
    """
    with tempfile.TemporaryDirectory(prefix="scrapesync-lease-") as scratch:
        probe = pipeline_for(provider, destination, pipelines_dir=scratch)
        with acquire(lease_key(provider, shard), probe, purpose=purpose):
            yield


def not_run(report: SyncReport, exc: LeaseHeldError, started: float) -> NotRunReport:
    """The report of a sync that never started; it writes no `sync_runs` row (the holder
    records its own run)."""
    return NotRunReport(
        report.provider, ok=False, error=str(exc), seconds=time.monotonic() - started
    )


def describe_unavailable(provider: str, destination: Any, exc: DestinationUnavailableError) -> str:
    """One line: the provider, the destination, why it cannot be opened and the fix."""
    name = destination if isinstance(destination, str) else type(destination).__name__
    return (
        f"{provider}: destination {name} unavailable: {exc}; no sync_runs row written for this "
        "failure (the destination cannot be opened); the next sync that opens it records its own"
    )


def record_sync_held(pipeline: dlt.Pipeline | None, provider: Provider, report: SyncReport) -> None:
    """`record_sync` with the DuckDB file held (another process may be loading into it)."""
    if pipeline is None:
        return
    try:
        with hold_destination(pipeline), load_lock(pipeline):
            record_sync(pipeline, provider, report)
    except DestinationUnavailableError as exc:
        message = f"{provider.name}: sync_runs / scrape_runs not written: {exc}"
        logger.warning(message)
        report.warnings.append(message)


def _run(
    pipeline: dlt.Pipeline,
    provider: Provider,
    report: SyncReport,
    full_refresh: bool,
    discard_pending: bool,
    options: dict[str, Any],
) -> None:
    # a DuckDB file is held only while the destination is used (before extract, after
    # normalize): other processes load into it while this one reads the provider's API; the
    # load lock lets the shards of a provider extract at the same time but load one at a time
    with hold_destination(pipeline), load_lock(pipeline):
        if discard_pending:
            _discard_pending(pipeline)
        report.recovered_packages = finish_pending(pipeline, provider)
        # the three steps of `pipeline.run`, spelled out to choose the load workers; restoring
        # the state from the destination first is what `run` does too (an ephemeral runner
        # keeps none)
        pipeline.sync_destination()
    source = provider.source(stats=report.stats, **options)
    pipeline.extract(
        source,
        loader_file_format=file_format(pipeline),
        refresh="drop_sources" if full_refresh else None,
    )
    pipeline.normalize()
    with hold_pending(pipeline), load_lock(pipeline):
        # counted under the lock: no other shard loads between these counts and the load's
        before = {} if full_refresh else row_counts(pipeline, keyed_tables(pipeline))
        info = pipeline.load(workers=load_workers(pipeline))
        run_post_load(pipeline, provider)
        tables = keyed_tables(pipeline)
        after = row_counts(pipeline, tables)
        written = written_counts(pipeline, tables, info.loads_ids)
    deletes = custom_metrics(pipeline, "deleted:")  # delete changes received per table
    report.tables = [
        table_report(table, before.get(table, 0), after.get(table, 0), written, deletes)
        for table in tables
        if table in after  # tables an option turns on (e.g. history) exist only when it is on
    ]


@contextmanager
def load_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Hold the dataset's load lock for the block (PostgreSQL; a no-op elsewhere).

    Runs that load one PostgreSQL dataset at the same time (the shards of a provider,
    docs/scale-out.md) would share dlt's staging dataset (`<dataset>_staging`: one shard's
    merge would read, or truncate, another's staging rows), race to create tables, add
    columns and store schema versions, and their merges into the same tables deadlock
    (measured: two shards loading at once fail with `deadlock detected`). Under this lock they
    extract and normalize in parallel and take turns for everything that writes the dataset
    (docs/scale-out.md, "Loading one dataset from N processes"). It is a session advisory
    lock: PostgreSQL frees it when the holder's connection ends, also when the process is
    killed. DuckDB files are held by one process at a time anyway (`hold_destination`).
    """
    if not str(pipeline.destination.destination_type).endswith(".postgres"):
        yield
        return
    key = f"scrapesync.load:{pipeline.dataset_name}"
    client = pipeline.sql_client()
    try:
        client.open_connection()
    except DestinationConnectionError as exc:
        raise DestinationUnavailableError.unreachable(pipeline, exc) from exc
    # released by closing the session (an unlock on a broken connection would only mask why)
    try:
        locked = client.execute_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key)
        if not locked or not locked[0][0]:
            logger.info(f"{pipeline.dataset_name}: waiting for another run's load to finish")
            client.execute_sql("SELECT pg_advisory_lock(hashtext(%s))", key)
        yield
    finally:
        client.close_connection()


@contextmanager
def hold_pending(pipeline: dlt.Pipeline) -> Iterator[None]:
    """`hold_destination` for the load: a file it cannot open leaves the package pending."""
    try:
        with hold_destination(pipeline):
            yield
    except DestinationUnavailableError as exc:
        raise DestinationUnavailableError(
            f"{exc}; the extracted data stays pending and the next sync loads it", exc.reason
        ) from exc


def keyed_tables(pipeline: dlt.Pipeline) -> list[str]:
    """The provider's keyed tables, as its resources declared them (the dlt schema)."""
    return list(merge_tables(pipeline.default_schema)) if pipeline.default_schema_name else []


def file_format(pipeline: dlt.Pipeline) -> Any:
    """Parquet where the destination takes it: 3x faster and 16x leaner than insert_values."""
    destination: Destination[Any, Any] = pipeline.destination
    caps = destination.capabilities()
    formats = caps.supported_loader_file_formats
    if caps.loader_file_format_selector is not None:
        # PostgreSQL lists parquet but loads it only through an ADBC driver; without one dlt
        # swaps in csv for Arrow pages, and csv cannot hold list columns (e.g. image URL lists)
        _, formats = caps.loader_file_format_selector(
            caps.preferred_loader_file_format, formats, table_schema={"name": "_probe"}
        )
    return "parquet" if "parquet" in formats else caps.preferred_loader_file_format


def load_workers(pipeline: dlt.Pipeline) -> int:
    """One load worker for DuckDB (a single writer: parallel jobs only add memory), else 20."""
    return 1 if pipeline.destination.destination_type.endswith(".duckdb") else 20


def finish_pending(pipeline: dlt.Pipeline, provider: Provider) -> int:
    """Load the packages an interrupted run left behind; returns how many there were.

    dlt on its own, given new data while a package is pending, only finishes that package and
    extracts nothing new (docs/dlt-behaviours.md, "Load packages and recovery"); finishing it
    first lets the same call sync new data.
    A package whose replay could double rows (an interrupted job of a table that skips the
    staging dedup) is discarded instead: its state is rolled back and its changes read again.
    """
    pending = list(pipeline.list_extracted_load_packages()) + list(
        pipeline.list_normalized_load_packages()
    )
    if not pending:
        return 0
    replayed = tables_a_replay_could_double(pipeline)
    if replayed:
        # the next `extract` reads the package's changes again (abort restores the state)
        logger.warning(
            f"{provider.name}: the interrupted load of {', '.join(replayed)} may already be "
            "committed, and loading it again would double rows: reading its changes again"
        )
        pipeline.abort_packages()
        return len(pending)
    logger.warning(
        f"{provider.name}: finishing {len(pending)} load package(s) of an interrupted run"
    )
    try:
        pipeline.normalize()
        pipeline.load(workers=load_workers(pipeline))
    except PipelineStepFailed as exc:
        raise SyncError(
            f"{provider.name}: a load package left by an earlier, interrupted sync cannot be "
            f"loaded: {root_cause(exc)}\n  Nothing new was synced. Fix the cause and run the "
            f"sync again, or give that package up with `scrapesync sync {provider.name} "
            "--discard-pending` (its changes are read again from the provider; nothing is lost)."
        ) from exc
    run_post_load(pipeline, provider)
    return len(pending)


def tables_a_replay_could_double(pipeline: dlt.Pipeline) -> list[str]:
    """Tables of interrupted load jobs whose second run would add their rows again.

    A job killed after the destination committed it, before dlt recorded that, runs again when
    its package is loaded (docs/dlt-behaviours.md, "Load packages and recovery"). The merge's
    staging dedup by primary key absorbs that second copy, except in tables declared
    `deduplicated`, whose merge skips it.
    """
    tables: set[str] = set()
    for load_id in pipeline.list_normalized_load_packages():
        package = pipeline.get_load_package_info(load_id)
        for job in package.jobs.get("started_jobs", []):
            name = job.job_file_info.table_name
            if package.schema.tables.get(name, {}).get("x-stage-data-deduplicated"):
                tables.add(name)
    return sorted(tables)


def run_post_load(pipeline: dlt.Pipeline, provider: Provider) -> None:
    """The provider's after-load SQL, where the destination's SQL can write.

    The filesystem destination's SQL client is read-only views over its files, and its tables
    are append-only (merge falls back to append there), so there is nothing to upkeep.
    """
    if provider.post_load is None:
        return
    if pipeline.destination.destination_type.endswith(".filesystem"):
        logger.info(f"{provider.name}: after-load SQL skipped (filesystem tables are append-only)")
        return
    provider.post_load(pipeline)


def _discard_pending(pipeline: dlt.Pipeline) -> None:
    # abort_packages also rolls the local state back to before those packages, so the next
    # extract reads their changes again (docs/dlt-behaviours.md, "Load packages and recovery")
    pending = pipeline.list_extracted_load_packages() or pipeline.list_normalized_load_packages()
    if pending:
        logger.warning(f"discarding {len(pending)} pending load package(s)")
        pipeline.abort_packages()


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause, or the first `ProviderAPIError` on the way there."""
    seen: set[int] = set()
    current: BaseException | None = exc
    last = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ProviderAPIError):
            return current
        seen.add(id(current))
        last = current
        current = current.__cause__ or current.__context__
        # a generator's end is control flow that an error happened during, never its cause
        if isinstance(current, (StopIteration, StopAsyncIteration, GeneratorExit)):
            break
    return last


def describe_failure(provider: str, exc: PipelineStepFailed) -> str:
    cause = root_cause(exc)
    if isinstance(cause, ProviderAPIError):
        return f"{cause}\n  Nothing of this sync was loaded; earlier data is unchanged."
    message = f"{provider}: sync failed at step {exc.step}: {type(cause).__name__}: {cause}"
    if exc.step == "load":
        message += (
            f"\n  The package stays pending and is retried by the next sync; to give it up run "
            f"`scrapesync sync {provider} --discard-pending`."
        )
    else:
        message += "\n  Nothing of this sync was loaded; earlier data is unchanged."
    return message


def _counts(pipeline: dlt.Pipeline, tables: Iterable[str], template: str) -> dict[str, int]:
    """`template` (`SELECT count(*) FROM {table} ...`) run for each table; 0 where it fails.

    One SQL connection serves every query (opening one resolves the destination's whole
    configuration: ~60-80 ms each, and a sync counts 3 times per table); a query that fails
    (a table not created yet, a destination without SQL) counts 0 and the rest go on through a
    fresh connection, since a failed statement can spoil a PostgreSQL transaction.
    """
    counts: dict[str, int] = {}
    pending = [table for table in tables if table in known_tables(pipeline)]
    while pending:
        try:
            with pipeline.sql_client() as client:
                while pending:
                    table = pending[0]
                    sql = template.format(table=client.make_qualified_table_name(table))
                    rows = client.execute_sql(sql)
                    counts[table] = int(rows[0][0]) if rows else 0
                    pending.pop(0)
        except Exception as exc:  # nothing to count there: see the docstring
            if pending:  # else closing the connection failed, after the last count
                logger.debug(f"count of {pending[0]} skipped: {exc}")
                counts[pending.pop(0)] = 0
    return counts


def known_tables(pipeline: dlt.Pipeline) -> set[str]:
    """Tables in the pipeline's schema (none before its first run)."""
    if not pipeline.default_schema_name:
        return set()
    return set(pipeline.default_schema.tables)


def row_counts(pipeline: dlt.Pipeline, tables: Iterable[str]) -> dict[str, int]:
    return _counts(pipeline, tables, "SELECT count(*) FROM {table}")


def written_counts(
    pipeline: dlt.Pipeline, tables: Iterable[str], load_ids: list[str]
) -> dict[str, int]:
    """Rows each table holds from this sync's loads (new or replaced rows)."""
    if not load_ids:
        return {}
    ids = ", ".join(f"'{load_id}'" for load_id in load_ids)
    # `{{table}}` stays a placeholder for `_counts`
    return _counts(
        pipeline, tables, f"SELECT count(*) FROM {{table}} WHERE _dlt_load_id IN ({ids})"
    )


def table_report(
    table: str, before: int, after: int, written: dict[str, int], deletes: dict[str, int]
) -> TableReport:
    """Split a table's change into inserted / updated / deleted rows.

    Rows not written by this sync kept their old load id, so `before - (after - written)` rows
    were replaced or removed. Removed rows are the delete changes received (capped by that); a
    delete of a record that was never loaded is therefore counted as a delete.
    """
    written_here = written.get(table, 0)
    replaced_or_removed = max(0, before - (after - written_here))
    deleted = min(deletes.get(table, 0), replaced_or_removed)
    updated = replaced_or_removed - deleted
    return TableReport(table, max(0, written_here - updated), updated, deleted, after)
