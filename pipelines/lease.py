"""Run leases: one run of a provider at a time, recorded in the destination every worker shares.

A sync of a provider (and any other run that must not overlap one, e.g. a job submission) takes
the provider's lease in `scrapesync._leases` before it touches the provider's state, renews it
from a background thread while it runs, and deletes it at the end:

* taking it is one statement, `INSERT ... ON CONFLICT (provider) DO UPDATE ... WHERE the
  lease expired`, which DuckDB and PostgreSQL both run atomically; reading the row back says
  who holds it. Times come from the database's own clock (`now()`), so workers with skewed
  clocks agree on expiry;
* a second run waits up to `scrapesync.lease_wait_seconds` (env
  SCRAPESYNC__LEASE_WAIT_SECONDS), then gives up with `LeaseHeldError`: a one-line message
  naming the holder (host, pid, since); the command line exits with `EXIT_LEASE_HELD` (75,
  EX_TEMPFAIL of sysexits.h: try again later);
* a run killed with SIGKILL stops renewing: its lease expires `scrapesync.lease_ttl_seconds`
  (env SCRAPESYNC__LEASE_TTL_SECONDS) after its last heartbeat, and the next run takes it. A
  run on the same machine (same host name and PID namespace) sees at once that the holder's
  process is gone and takes the lease over without waiting for the TTL.

The heartbeat runs every third of the TTL. On a DuckDB file it must wait while another process
holds the file (`pipelines/warehouse.py`), so the TTL is longer than such a wait by default.
Leases are kept on DuckDB (and MotherDuck) and PostgreSQL; on other destinations runs are not
serialised (a warning says so): see README, "Concurrency".

A sharded sync (`scrapesync sync <provider> --shard 1/3`) takes the lease of its shard, keyed
`<provider>[1/3]` (`runner.lease_key`): the shards of one run hold theirs at the same time, and
two runs of the same shard still exclude each other. Leases of one provider with
different shapes exclude each other too: an unsharded run and any shard, or shards of
different counts (`<provider>[1/2]` and `<provider>[1/3]` own overlapping partitions, and two runs
reading one partition at different moments could load an older version over a newer one).
Of two such runs, the one that took its lease first keeps it and the other waits
(`_rival`): the rule both apply to the same two rows, so they never both yield.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.common import logger
from dlt.destinations.exceptions import DestinationConnectionError
from dlt.destinations.sql_client import SqlClientBase

from scrapesync.pipelines.warehouse import (
    DestinationUnavailableError,
    DuckDbFile,
    Warehouse,
    duckdb_file,
    hold_destination,
    open_duckdb_waiting,
    open_warehouse,
    wait_setting,
)

LEASES: Final = "_leases"
EXIT_LEASE_HELD: Final = 75
WAIT_KEY: Final = "scrapesync.lease_wait_seconds"
TTL_KEY: Final = "scrapesync.lease_ttl_seconds"
DEFAULT_WAIT_S: Final = 60.0
DEFAULT_TTL_S: Final = 600.0
MIN_TTL_S: Final = 2.0
# destinations whose SQL takes the lease statement (INSERT ... ON CONFLICT ... DO UPDATE WHERE)
LEASE_DESTINATIONS: Final = ("duckdb", "motherduck", "postgres")
# an attempt that fails for another reason than a held lease (e.g. two first runs creating the
# table at once on PostgreSQL) is tried again this many times
MAX_ATTEMPT_ERRORS: Final = 3
LEASE_COLUMNS: Final = (
    ("provider", "text"),
    ("holder", "text"),
    ("purpose", "text"),
    ("host", "text"),
    ("pid", "bigint"),
    ("pid_namespace", "text"),
    ("started_at", "timestamp"),
    ("heartbeat_at", "timestamp"),
    ("expires_at", "timestamp"),
)


# a shard's lease key: `<provider>[<i>/<N>]` (runner.lease_key)
_SHARD_KEY = re.compile(r"^(?P<family>.+)\[(?P<index>\d+)/(?P<count>\d+)\]$")


def key_shape(key: str) -> tuple[str, int | None]:
    """A lease key's provider and shard count (None: unsharded, the whole provider)."""
    match = _SHARD_KEY.match(key)
    if match is None:
        return key, None
    return match["family"], int(match["count"])


def compatible(key: str, other: str) -> bool:
    """Whether runs holding leases `key` and `other` may run at the same time: other
    providers, or shards of one count (each owns its own partitions)."""
    (family, count), (other_family, other_count) = key_shape(key), key_shape(other)
    if family != other_family:
        return True
    return count is not None and count == other_count and key != other


@dataclass(frozen=True)
class Holder:
    """Who holds a provider's lease, as the `_leases` row says."""

    holder: str
    purpose: str
    host: str
    pid: int
    pid_namespace: str | None
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    key: str = ""  # the lease's key (`<provider>`, `<provider>[1/3]`)

    def is_dead_here(self) -> bool:
        """True when the holder ran in this machine's PID namespace and its process is gone."""
        same_place = self.host == socket.gethostname() and self.pid_namespace == pid_namespace()
        return same_place and self.pid != os.getpid() and not process_alive(self.pid)

    def describe(self) -> str:
        return (
            f"{self.purpose} on host {self.host}, pid {self.pid}, since {_iso(self.started_at)}, "
            f"last heartbeat {_iso(self.heartbeat_at)}"
        )


class LeaseHeldError(Exception):
    """Another run held the provider's lease for the whole wait."""

    def __init__(self, provider: str, holder: Holder, waited: float) -> None:
        held = "its lease"
        if holder.key not in ("", provider):
            held = (
                f"the lease {holder.key} (it reads the same partitions: a sharded and an "
                "unsharded run, or shard counts that differ, do not run at once)"
            )
        super().__init__(
            f"{provider}: not run, another run holds {held} ({holder.describe()}); waited "
            f"{waited:g} s (SCRAPESYNC__LEASE_WAIT_SECONDS); if that run died, its lease "
            f"expires at {_iso(holder.expires_at)}"
        )
        self.provider = provider
        self.holder = holder


@dataclass
class Lease:
    """A held lease; `lost` turns true if a heartbeat found another holder in its place."""

    provider: str
    holder: str
    ttl: timedelta
    table: str
    client: SqlClientBase[Any] | None
    file: DuckDbFile | None
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"scrapesync-lease-{self.provider}", daemon=True
        )
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _heartbeat(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            self.beat(wait_seconds=interval / 2)

    def beat(self, wait_seconds: float) -> bool:
        """Renew the lease; False when it could not be written (tried again next beat)."""
        if self.client is None:
            return True
        connection = None
        try:
            if self.file is not None:
                connection = open_duckdb_waiting(self.file, wait_seconds)
            with self.client as client:
                rows = client.execute_sql(
                    f"UPDATE {self.table} SET heartbeat_at = now(), expires_at = now() + %s "
                    "WHERE provider = %s AND holder = %s RETURNING holder",
                    self.ttl,
                    self.provider,
                    self.holder,
                )
        except Exception as exc:  # the next beat tries again; the TTL covers a missed one
            logger.warning(f"{self.provider}: lease heartbeat not written ({exc}); retrying")
            return False
        finally:
            if connection is not None:
                connection.close()
        if not rows and not self.lost:
            self.lost = True
            logger.warning(
                f"{self.provider}: the run lease expired and another run took it (heartbeats "
                "could not be written within SCRAPESYNC__LEASE_TTL_SECONDS)"
            )
        return bool(rows)


@contextmanager
def acquire(
    provider: str,
    pipeline: dlt.Pipeline,
    *,
    purpose: str = "sync",
    wait_seconds: float | None = None,
    ttl_seconds: float | None = None,
) -> Iterator[Lease]:
    """Hold `provider`'s run lease in `pipeline`'s destination for the block.

    Args:
        provider: the lease key: a provider (one lease per provider, whatever the purpose)
            or one shard of it (`<provider>[1/3]`).
        pipeline: any pipeline on the destination (its dataset does not matter).
        purpose: what the holder does, shown to a run that waits (`sync`, `submit`).
        wait_seconds: how long to wait for another holder (default: config, 60 s).
        ttl_seconds: how long the lease outlives the holder's last heartbeat (default 600 s).

    Raises:
        LeaseHeldError: another run held it for the whole wait.
        DestinationUnavailableError: the destination cannot be opened.
    """
    wait = wait_setting(WAIT_KEY, DEFAULT_WAIT_S) if wait_seconds is None else wait_seconds
    ttl = wait_setting(TTL_KEY, DEFAULT_TTL_S) if ttl_seconds is None else ttl_seconds
    if ttl < MIN_TTL_S:
        raise ValueError(f"{TTL_KEY} must be at least {MIN_TTL_S:g} seconds, got {ttl:g}")
    lease = _take(provider, pipeline, purpose, wait, timedelta(seconds=ttl))
    lease.start_heartbeat()
    try:
        yield lease
    finally:
        lease.stop_heartbeat()
        _release(pipeline, lease)


def leases_supported(pipeline: dlt.Pipeline) -> bool:
    kind = str(pipeline.destination.destination_type).rsplit(".", 1)[-1]
    return kind in LEASE_DESTINATIONS


def _take(
    provider: str, pipeline: dlt.Pipeline, purpose: str, wait: float, ttl: timedelta
) -> Lease:
    holder_id = uuid.uuid4().hex
    if not leases_supported(pipeline):
        logger.warning(
            f"{provider}: runs are not serialised on {pipeline.destination.destination_name} "
            "(run leases are kept on DuckDB and PostgreSQL): run one sync per provider at a time"
        )
        return Lease(provider, holder_id, ttl, "", None, None)
    deadline = time.monotonic() + wait
    pause, announced, errors = 0.5, False, 0
    while True:
        try:
            holder, table = _attempt(pipeline, provider, holder_id, purpose, ttl)
        except DestinationConnectionError as exc:
            raise DestinationUnavailableError.unreachable(pipeline, exc) from exc
        except DestinationUnavailableError:
            raise
        except Exception:
            errors += 1
            if errors >= MAX_ATTEMPT_ERRORS:
                raise
            time.sleep(pause)
            continue
        if holder is not None and holder.holder == holder_id:
            client = pipeline.sql_client()
            return Lease(provider, holder_id, ttl, table, client, duckdb_file(pipeline))
        if holder is None:  # released between our insert and our read: try again
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise LeaseHeldError(provider, holder, wait)
        if not announced:
            logger.warning(
                f"{provider}: waiting for the run lease, held by {holder.describe()}; "
                f"up to {wait:g} s"
            )
            announced = True
        time.sleep(min(pause, left))
        pause = min(pause * 2, 5.0)


def _attempt(
    pipeline: dlt.Pipeline, provider: str, holder_id: str, purpose: str, ttl: timedelta
) -> tuple[Holder | None, str]:
    """One try to take the lease; returns the holder afterwards and the table's name."""
    with hold_destination(pipeline), open_warehouse(pipeline) as warehouse:
        warehouse.ensure_table(LEASES, LEASE_COLUMNS, primary_key=("provider",))
        table = warehouse.table(LEASES)
        names = ", ".join(warehouse.column(name) for name, _ in LEASE_COLUMNS)
        # the lease is taken when no row exists, when it expired, or when it is already ours
        warehouse.execute(
            f"INSERT INTO {table} ({names}) "
            "VALUES (%s, %s, %s, %s, %s, %s, now(), now(), now() + %s) "
            "ON CONFLICT (provider) DO UPDATE SET holder = EXCLUDED.holder, "
            "purpose = EXCLUDED.purpose, host = EXCLUDED.host, pid = EXCLUDED.pid, "
            "pid_namespace = EXCLUDED.pid_namespace, "
            "started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, "
            "expires_at = EXCLUDED.expires_at "
            f"WHERE {table}.expires_at < EXCLUDED.started_at OR {table}.holder = EXCLUDED.holder",
            provider,
            holder_id,
            purpose,
            socket.gethostname(),
            os.getpid(),
            pid_namespace(),
            ttl,
        )
        holder = _holder(warehouse, table, provider)
        if holder is not None and holder.holder != holder_id and holder.is_dead_here():
            _take_over(warehouse, table, holder, (provider, holder_id, purpose), ttl)
            holder = _holder(warehouse, table, provider)
        if holder is not None and holder.holder == holder_id:
            rival = _rival(warehouse, table, provider, holder)
            if rival is not None:  # it came first: give ours back and wait for it
                warehouse.execute(
                    f"DELETE FROM {table} WHERE provider = %s AND holder = %s", provider, holder_id
                )
                return rival, table
        return holder, table


def _rival(warehouse: Warehouse, table: str, key: str, mine: Holder) -> Holder | None:
    """A live lease of the same provider that excludes `key` and was taken before ours.

    Both runs read both rows, so they agree on which came first (`started_at`, then the
    holder id): the earlier keeps its lease, the later waits. Expired leases and leases of
    processes gone from this machine do not count.
    """
    # a row per provider and shard: small enough to read whole (LIKE escapes differ per SQL)
    live = "expires_at >= now()"
    rows = warehouse.execute(f"SELECT {HOLDER_COLUMNS}, provider, {live} FROM {table}")
    for row in rows:
        other = Holder(*row[:-1])
        if compatible(key, other.key) or not row[-1] or other.is_dead_here():
            continue
        if (other.started_at, other.holder) < (mine.started_at, mine.holder):
            return other
    return None


def _take_over(
    warehouse: Warehouse, table: str, dead: Holder, me: tuple[str, str, str], ttl: timedelta
) -> None:
    provider, holder_id, purpose = me
    logger.warning(
        f"{provider}: taking over the run lease of {dead.describe()}: that process is gone"
    )
    # conditional on the dead holder's id: of two runs taking over at once, one wins
    warehouse.execute(
        f"UPDATE {table} SET holder = %s, purpose = %s, pid = %s, started_at = now(), "
        "heartbeat_at = now(), expires_at = now() + %s WHERE provider = %s AND holder = %s",
        holder_id,
        purpose,
        os.getpid(),
        ttl,
        provider,
        dead.holder,
    )


def pid_namespace() -> str | None:
    """This process's PID namespace (Linux), so that containers sharing a host name never
    judge each other's PIDs."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists here and is not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


HOLDER_COLUMNS: Final = (
    "holder, purpose, host, pid, pid_namespace, started_at, heartbeat_at, expires_at"
)


def _holder(warehouse: Warehouse, table: str, provider: str) -> Holder | None:
    rows = warehouse.execute(
        f"SELECT {HOLDER_COLUMNS}, provider FROM {table} WHERE provider = %s", provider
    )
    return Holder(*rows[0]) if rows else None


def current_holder(pipeline: dlt.Pipeline, provider: str) -> Holder | None:
    """Who holds `provider`'s lease now (expired or not); None when nobody does."""
    with hold_destination(pipeline), open_warehouse(pipeline) as warehouse:
        if not warehouse.exists(LEASES):
            return None
        return _holder(warehouse, warehouse.table(LEASES), provider)


def _release(pipeline: dlt.Pipeline, lease: Lease) -> None:
    if lease.client is None:
        return
    try:
        with hold_destination(pipeline), open_warehouse(pipeline) as warehouse:
            warehouse.execute(
                f"DELETE FROM {lease.table} WHERE provider = %s AND holder = %s",
                lease.provider,
                lease.holder,
            )
    except Exception as exc:  # it expires after the TTL instead
        logger.warning(
            f"{lease.provider}: run lease not released ({exc}); it expires after "
            f"{lease.ttl.total_seconds():g} s"
        )


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)
