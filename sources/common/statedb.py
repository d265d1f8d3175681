"""State every worker shares, kept in the destination: provider ledgers and the webhook inbox.

A run may land on a fresh machine whose local disk is empty; only the destination persists.
So what a later run needs (a provider's job ledger, the notifications `scrapesync listen`
received) is kept in SQL tables of the destination itself, in a schema of its own (never a
dlt dataset, so `--full-refresh` of a provider leaves it alone):

* DuckDB: the destination's file, opened for each transaction and closed at once. DuckDB
  lets one process at a time open a file for writing, so an open that finds the file held
  by another process (a sync's load, the listener) waits with bounded retries and says so;
* PostgreSQL: a connection derived from the destination's credentials; plain transactions;
* SQLite: an explicit local file (a provider's `journal_path` override, and the spool below).

`StateDB.for_pipeline(pipeline)` derives the store from a dlt pipeline's destination
credentials; `StateDB.from_config()` from `[scrapesync] destination` (env
SCRAPESYNC__DESTINATION, default `duckdb`, i.e. `./scrapesync.duckdb` unless
`destination.duckdb.credentials` names another file), for processes without a pipeline such
as the listener.

SQL is written once with `?` placeholders and the subset the three databases share
(`INSERT ... ON CONFLICT DO NOTHING`, `RETURNING`, TEXT/BIGINT columns); every statement runs
with the store's schema as the search path, so table names stay unqualified.

**The spool.** A writer that must not wait (the listener answering a webhook) uses
`insert_or_spool`: when the DuckDB file stays held past a short wait, the row goes to an
append-only local SQLite spool (fsync'd before the caller answers) and a background thread
flushes the spool into the destination as soon as the file is free. Rows are inserted with
`ON CONFLICT DO NOTHING` on their keys, so a flush repeated after a crash stores nothing twice.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import orjson
from dlt.common import logger

# how long a DuckDB open waits for a file another process holds, by default (seconds)
DEFAULT_LOCK_WAIT = 120.0
# how long `insert_or_spool` waits for the file before it spools instead
SPOOL_AFTER = 2.0
SPOOL_FILE = "state-spool.sqlite"
DEFAULT_DUCKDB_FILE = "scrapesync.duckdb"

_process_locks: dict[str, threading.RLock] = {}
_process_locks_guard = threading.Lock()


class StateBusy(Exception):  # noqa: N818 (reads as `except StateBusy`)
    """The DuckDB file stayed held by another process for the whole wait."""


def _process_lock(key: str) -> threading.RLock:
    """One lock per database in this process: its transactions run one at a time."""
    with _process_locks_guard:
        return _process_locks.setdefault(key, threading.RLock())


@dataclass
class Tx:
    """One open transaction: `execute` returns the statement's rows as dicts (may be [])."""

    kind: str
    cursor: Any

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.cursor.execute(_dialect(self.kind, sql), tuple(params))
        return _rows(self.cursor)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        statement = _dialect(self.kind, sql)
        if self.kind == "postgres":
            from psycopg2.extras import execute_batch

            execute_batch(self.cursor, statement, [tuple(r) for r in rows], page_size=1000)
        else:
            self.cursor.executemany(statement, [tuple(r) for r in rows])


def _dialect(kind: str, sql: str) -> str:
    # psycopg2 takes `%s` (and a literal `%` doubled); DuckDB and SQLite take `?`
    return sql.replace("%", "%%").replace("?", "%s") if kind == "postgres" else sql


def _rows(cursor: Any) -> list[dict[str, Any]]:
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    if names == ["Count"]:  # DuckDB's row count of a DML statement without RETURNING
        return []
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass
class StateDB:
    """A SQL store in the destination (or an explicit SQLite file), under schema `schema`.

    Attributes:
        kind: `duckdb`, `postgres` or `sqlite`.
        target: the DuckDB / SQLite file path, or the PostgreSQL connection URL (secret: never
            logged; `location` is the printable form).
        schema: the schema (dataset) holding the tables; ignored by SQLite (one file each).
        spool_dir: where `insert_or_spool` keeps rows it could not write yet.
        lock_wait: seconds an open waits for a DuckDB file another process holds.
    """

    kind: str
    target: str
    schema: str
    spool_dir: Path | None = None
    lock_wait: float = DEFAULT_LOCK_WAIT
    location: str = ""
    _conn: Any = field(default=None, init=False, repr=False)
    _ready: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("duckdb", "postgres", "sqlite"):
            raise ValueError(f"state store: unsupported database {self.kind!r}")
        if not self.location:
            self.location = self._printable()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def for_pipeline(cls, pipeline: dlt.Pipeline, schema: str, **options: Any) -> StateDB:
        """The store in `pipeline`'s destination (its resolved credentials)."""
        credentials = pipeline.destination_client().config.credentials
        return cls.for_credentials(
            pipeline.destination.destination_name, credentials, schema, **options
        )

    @classmethod
    def from_config(cls, schema: str, destination: Any = None, **options: Any) -> StateDB:
        """The store in `destination` (default `[scrapesync] destination`, else duckdb)."""
        from dlt.common.destination import Destination

        reference = destination or dlt.config.get("scrapesync.destination") or "duckdb"
        target: Any = Destination.from_reference(reference)
        name = target.destination_name
        if (
            name == "duckdb"
            and not _configured_duckdb()
            and not target.config_params.get("credentials")
        ):
            path = Path.cwd() / DEFAULT_DUCKDB_FILE  # the README's contract for plain `duckdb`
            return cls("duckdb", str(path), schema, **options)
        initial = target.spec()
        initial.dataset_name = schema  # required by the spec; the store uses its own schema
        config = target.configuration(initial, accept_partial=False)
        return cls.for_credentials(name, config.credentials, schema, **options)

    @classmethod
    def for_credentials(cls, name: str, credentials: Any, schema: str, **options: Any) -> StateDB:
        if name == "duckdb" or type(credentials).__name__ == "DuckDbCredentials":
            return cls("duckdb", str(credentials._conn_str()), schema, **options)
        if name == "postgres" or type(credentials).__name__ == "PostgresCredentials":
            return cls("postgres", str(credentials.to_native_representation()), schema, **options)
        raise ValueError(
            f"the `{name}` destination has no SQL store for scrapesync's shared state (ledgers, "
            "webhook inbox): use DuckDB or PostgreSQL, or give the provider's ledger a local "
            "file where it offers one (its `journal_path` setting)"
        )

    @classmethod
    def sqlite(cls, path: str | Path, schema: str = "main") -> StateDB:
        return cls("sqlite", str(path), schema)

    def with_schema(self, schema: str) -> StateDB:
        return StateDB(self.kind, self.target, schema, self.spool_dir, self.lock_wait)

    def _printable(self) -> str:
        if self.kind == "postgres":
            from urllib.parse import urlsplit

            parts = urlsplit(self.target)
            return (
                f"postgres://{parts.hostname}:{parts.port or 5432}{parts.path} schema {self.schema}"
            )
        return f"{self.kind}:{self.target}" + (
            f" schema {self.schema}" if self.kind == "duckdb" else ""
        )

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self, wait: float | None = None) -> Iterator[Tx]:
        """One transaction, committed on a clean exit (durable when the block ends)."""
        with _process_lock(self.target), self._connection(wait) as conn:
            # a DuckDB cursor is another connection, without this one's `SET schema`
            cursor = conn if self.kind == "duckdb" else conn.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN TRANSACTION")
                tx = Tx(self.kind, cursor)
                yield tx
                cursor.execute("COMMIT")
            except BaseException:
                try:
                    cursor.execute("ROLLBACK")
                except Exception as exc:  # the connection died with the error: nothing to undo
                    logger.debug(f"state store: rollback skipped ({exc})")
                raise
            finally:
                if cursor is not conn:
                    cursor.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.transaction() as tx:
            return tx.execute(sql, params)

    def ensure(self, name: str, statements: Sequence[str]) -> None:
        """Create the tables of `name` once per process (idempotent DDL)."""
        if name in self._ready:
            return
        with self.transaction() as tx:
            for statement in statements:
                tx.execute(statement)
        self._ready.add(name)

    @contextmanager
    def _connection(self, wait: float | None) -> Iterator[Any]:
        if self.kind == "duckdb":
            conn = _DUCKDB.get(self.target, lambda: self._open_duckdb(wait))
            conn.execute(f"SET schema = '{self.schema}'")
            try:
                yield conn
            finally:
                _DUCKDB.used(self.target)
            return
        if self._conn is None:
            self._conn = self._open_persistent()
        try:
            yield self._conn
        except Exception as exc:
            if self.kind == "postgres" and getattr(self._conn, "closed", False):
                self._conn = None  # a dropped server connection: reconnect next time
            raise exc

    def _open_persistent(self) -> Any:
        if self.kind == "sqlite":
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.target, isolation_level=None, check_same_thread=False, timeout=60
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the next step
            conn.execute("PRAGMA busy_timeout=60000")
            return conn
        import psycopg2

        conn = psycopg2.connect(self.target)
        conn.autocommit = True  # transactions are explicit BEGIN ... COMMIT
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cursor.execute(f'SET search_path TO "{self.schema}"')
        return conn

    def release(self) -> None:
        """Close this process's DuckDB connection now (it is closed when idle anyway)."""
        if self.kind == "duckdb":
            _DUCKDB.close(self.target)

    def _open_duckdb(self, wait: float | None) -> Any:
        import duckdb

        wait = self.lock_wait if wait is None else wait
        deadline = time.monotonic() + wait
        pause, warned = 0.05, False
        while True:
            try:
                conn = duckdb.connect(self.target)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() + pause > deadline:
                    if "lock" in str(exc).lower():
                        raise StateBusy(
                            f"{self.target} is held by another process (a sync's load or the "
                            f"listener) for more than {wait:.0f} s"
                        ) from None
                    raise
                if not warned:
                    logger.warning(
                        f"state store: waiting for {self.target}, held by another process"
                    )
                    warned = True
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        return conn

    # -- exclusive sections ----------------------------------------------------------------
    @contextmanager
    def exclusive(self, name: str, wait: bool = True) -> Iterator[bool]:
        """Hold the store-wide lock `name`; yields False (at once) when held and not `wait`.

        Released when the holder ends, even by SIGKILL: a PostgreSQL advisory lock lives in its
        session; a file's lock (DuckDB, SQLite: one machine) is an `flock` next to the file.
        """
        if self.kind == "postgres":
            with self._advisory_lock(name, wait) as owned:
                yield owned
            return
        lock_path = Path(f"{self.target}.{self.schema}.{name}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def _advisory_lock(self, name: str, wait: bool) -> Iterator[bool]:
        import psycopg2

        key = f"{self.schema}.{name}"
        with closing(psycopg2.connect(self.target)) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                if wait:
                    cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
                else:
                    cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
                    if not cursor.fetchone()[0]:
                        yield False
                        return
                try:
                    yield True
                finally:
                    cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    # -- writes that must not wait ---------------------------------------------------------
    def insert_or_spool(self, table: str, row: dict[str, Any], ddl: Sequence[str] = ()) -> bool:
        """Insert `row` (ignored when its key exists); spool it when the file stays busy.

        Returns False only for a row the store already held (a duplicate); a spooled row
        counts as stored: it is on disk and reaches the store with the next flush.
        """
        spool = self._spool()
        if spool is not None and spool.pending():
            spool.flush(self)
        try:
            with self.transaction(wait=SPOOL_AFTER if self.kind == "duckdb" else None) as tx:
                for statement in ddl:  # idempotent: the table may not exist yet
                    tx.execute(statement)
                return bool(tx.execute(_insert_sql(table, row), list(row.values())))
        except StateBusy:
            if spool is None:
                raise
        spool.add(self.schema, table, row, ddl)
        logger.warning(
            f"state store: {self.target} is busy (another process writes it): the {table} row "
            f"is kept in the local spool {spool.path} and written there as soon as it is free"
        )
        spool.start_flusher(self)
        return True

    def _spool(self) -> Spool | None:
        if self.kind != "duckdb":
            return None
        directory = self.spool_dir or Path(dlt.current.run_context().data_dir) / "scrapesync"
        return Spool.at(directory / SPOOL_FILE)


class _DuckDBConnections:
    """This process's DuckDB connections, one per file, closed after `idle` seconds unused.

    Opening a DuckDB file and closing it (a checkpoint) costs about 150 ms on a loaded
    machine; a burst of writes (callbacks arriving together, a sync's ledger updates) shares
    one connection, and the file is released to other processes once the burst is over.
    Callers hold the file's process lock (`_process_lock`).
    """

    def __init__(self, idle: float = 0.25) -> None:
        self.idle = idle
        self._conns: dict[str, tuple[Any, float]] = {}
        self._closer: threading.Thread | None = None
        self._guard = threading.Lock()

    def get(self, target: str, open_: Callable[[], Any]) -> Any:
        with self._guard:
            entry = self._conns.get(target)
        if entry is not None:
            return entry[0]
        conn = open_()
        with self._guard:
            self._conns[target] = (conn, time.monotonic())
        return conn

    def used(self, target: str) -> None:
        with self._guard:
            entry = self._conns.get(target)
            if entry is not None:
                self._conns[target] = (entry[0], time.monotonic())
            if self._closer is None or not self._closer.is_alive():
                self._closer = threading.Thread(
                    target=self._close_idle, name="scrapesync-duckdb-idle", daemon=True
                )
                self._closer.start()

    def close(self, target: str) -> None:
        with _process_lock(target), self._guard:
            entry = self._conns.pop(target, None)
        if entry is not None:
            entry[0].close()

    def close_all(self) -> None:
        with self._guard:
            targets = list(self._conns)
        for target in targets:
            self.close(target)

    def _close_idle(self) -> None:
        while True:
            time.sleep(self.idle / 2)
            with self._guard:
                targets = list(self._conns)
            if not targets:
                with self._guard:
                    if not self._conns:
                        self._closer = None
                        return
                continue
            for target in targets:
                lock = _process_lock(target)
                if not lock.acquire(blocking=False):
                    continue  # in use: not idle
                try:
                    with self._guard:
                        entry = self._conns.get(target)
                        stale = entry is not None and time.monotonic() - entry[1] >= self.idle
                        if stale:
                            del self._conns[target]
                    if stale and entry is not None:
                        entry[0].close()  # releases the file to other processes
                finally:
                    lock.release()


_DUCKDB = _DuckDBConnections()


def release_duckdb_connections() -> None:
    """Close every DuckDB connection this process keeps for state stores, now.

    A sync calls this when it ends: a connection left for the idle closer would still hold the
    file for a moment, and DuckDB refuses another open of a file this process holds with
    other settings (a read-only query of the results right after the sync, in the same
    process, failed with "different configuration than existing connections").
    """
    _DUCKDB.close_all()


def _insert_sql(table: str, row: dict[str, Any]) -> str:
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    first = next(iter(row))
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING RETURNING {first}"
    )


def _configured_duckdb() -> Any:
    key = "destination.duckdb.credentials"
    return dlt.secrets.get(key) or dlt.config.get(key)


class Spool:
    """An append-only local SQLite file of rows waiting for the destination (see module doc)."""

    _instances: dict[str, Spool] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "schema_name TEXT NOT NULL, table_name TEXT NOT NULL, row TEXT NOT NULL, "
                "ddl TEXT NOT NULL, spooled_at REAL NOT NULL)"
            )

    @classmethod
    def at(cls, path: Path) -> Spool:
        with cls._guard:
            key = str(path.resolve())
            if key not in cls._instances:
                cls._instances[key] = Spool(path)
            return cls._instances[key]

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=60, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db

    def add(self, schema: str, table: str, row: dict[str, Any], ddl: Sequence[str]) -> None:
        with self._lock, self._db() as db:
            db.execute(
                "INSERT INTO spool (schema_name, table_name, row, ddl, spooled_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    schema,
                    table,
                    orjson.dumps(row).decode(),
                    orjson.dumps(list(ddl)).decode(),
                    time.time(),
                ),
            )

    def pending(self) -> int:
        with self._lock, self._db() as db:
            return int(db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def flush(self, store: StateDB) -> int:
        """Write every spooled row of `store`'s file; returns how many were flushed."""
        with self._lock:
            with self._db() as db:
                rows = db.execute(
                    "SELECT id, schema_name, table_name, row, ddl FROM spool ORDER BY id"
                ).fetchall()
            if not rows:
                return 0
            try:
                self._write(store, rows)
            except StateBusy:
                return 0
            with self._db() as db:
                db.executemany("DELETE FROM spool WHERE id = ?", [(r[0],) for r in rows])
        logger.info(f"state store: {len(rows)} spooled row(s) written to {store.location}")
        return len(rows)

    @staticmethod
    def _write(store: StateDB, rows: list[tuple[Any, ...]]) -> None:
        for schema in {r[1] for r in rows}:
            target = store.with_schema(schema)
            with target.transaction(wait=SPOOL_AFTER) as tx:
                for _, _, table, encoded, ddl in (r for r in rows if r[1] == schema):
                    for statement in orjson.loads(ddl):
                        tx.execute(statement)
                    row = orjson.loads(encoded)
                    tx.execute(_insert_sql(table, row), list(row.values()))

    def start_flusher(self, store: StateDB, interval: float = 1.0) -> None:
        """Flush in the background until the spool is empty (one thread per spool)."""
        with self._guard:
            if self._flusher is not None and self._flusher.is_alive():
                return
            self._flusher = threading.Thread(
                target=self._flush_until_empty,
                args=(store, interval),
                name="scrapesync-spool",
                daemon=True,
            )
            self._flusher.start()

    def _flush_until_empty(self, store: StateDB, interval: float) -> None:
        pause = interval
        while self.pending():
            time.sleep(pause)
            try:
                flushed = self.flush(store)
            except Exception as exc:  # keep the rows; the next delivery or flush tries again
                logger.error(f"state store: spool flush failed: {type(exc).__name__}: {exc}")
                flushed = 0
            pause = interval if flushed else min(pause * 1.5, 10.0)
