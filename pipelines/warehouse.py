"""SQL on the destination for scrapesync's own dataset (`scrapesync`), portable across dlt's SQL
destinations.

scrapesync's own tables (`scrape_runs`, `sync_runs`, `sync_checks`) live beside the provider
datasets, written through the provider pipeline's dlt `sql_client` (same destination, same
credentials). They are not loaded by a dlt pipeline of their own because the default DuckDB
file is `scrapesync.duckdb`: its catalog is called `scrapesync`, and a dataset of the same name
makes every unqualified `"scrapesync"."table"` ambiguous in DuckDB's binder, including the ones
dlt itself issues (docs/dlt-behaviours.md, "Configuration and names"). Here every name is
qualified with the catalog on DuckDB (the one guarded dialect difference); column types come
from the destination's own dlt type mapper, and the SQL is plain (CREATE ... IF NOT EXISTS,
INSERT ... SELECT, DELETE ... WHERE, CASE, EXTRACT(EPOCH ...)), which DuckDB and PostgreSQL both
run.

A DuckDB file has one writer process at a time: while one process has it open, every other
process fails to open it, read-only or not. `hold_destination` opens the file in this process
and keeps it open for a block of destination work; it waits for another process to let go, with
bounded retries (`scrapesync.duckdb_wait_seconds`, env SCRAPESYNC__DUCKDB_WAIT_SECONDS) and one
progress line. While it is open, dlt's own connections in this process reuse DuckDB's instance
of the file and never hit the lock (README, "Concurrency").
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from weakref import WeakKeyDictionary

import dlt
import pyarrow as pa
from dlt.common import logger
from dlt.common.destination.capabilities import DataTypeMapper
from dlt.destinations.impl.duckdb.configuration import DuckDbBaseCredentials
from dlt.destinations.sql_client import SqlClientBase

DATASET = "scrapesync"
FILE_WAIT_KEY: Final = "scrapesync.duckdb_wait_seconds"
DEFAULT_FILE_WAIT_S: Final = 300.0
MAX_WAIT_S: Final = 86_400.0
# DuckDB's message when another process holds the file: `Could not set lock on file ...:
# Conflicting lock is held in <exe> (PID <n>)`
LOCK_HELD: Final = "Could not set lock on file"
_HOLDER_PID = re.compile(r"\(PID (\d+)\)")
# column name -> dlt data type; the destination's type mapper turns these into its own types
Columns = Sequence[tuple[str, str]]


@dataclass
class Warehouse:
    """An open SQL connection to the destination, able to name scrapesync's tables."""

    client: SqlClientBase[Any]
    is_duckdb: bool
    pipeline: dlt.Pipeline | None = None
    _catalog: str | None = None
    _types: DataTypeMapper | None = None
    _created: set[str] = field(default_factory=set)

    @property
    def types(self) -> DataTypeMapper | None:
        # resolved on first use: building a job client costs a config resolution (~40 ms)
        if self._types is None and self.pipeline is not None:
            self._types = self.pipeline.destination_client().type_mapper  # type: ignore[attr-defined]
        return self._types

    def table(self, name: str, dataset: str = DATASET) -> str:
        """The fully qualified, quoted name of `dataset.name`."""
        if self.is_duckdb and self._catalog is None:
            self._catalog = str(self.execute("SELECT current_database()")[0][0])
        path = self.client.make_qualified_table_name_path(
            name, dataset_name=dataset, catalog=self._catalog if self.is_duckdb else None
        )
        return ".".join(path)

    def column(self, name: str) -> str:
        return str(self.client.escape_column_name(name))

    def execute(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run `sql` (`%s` placeholders, dlt converts them per driver); rows or []."""
        return [tuple(row) for row in self.client.execute_sql(sql, *args) or []]

    def ensure_table(self, name: str, columns: Columns, primary_key: Sequence[str] = ()) -> None:
        """Create `scrapesync.<name>` with `columns` unless it exists (types per destination)."""
        if name in self._created or self.exists(name):
            self._created.add(name)
            return
        if self.types is None:
            raise RuntimeError("creating tables needs the destination's type mapper")
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema()}")
        mapper = self.types
        defs = ", ".join(
            f"{self.column(col)} "
            + mapper.to_destination_type(
                {"name": col, "data_type": kind, "nullable": True},  # type: ignore[typeddict-item]
                {"name": name},
            )
            for col, kind in columns
        )
        if primary_key:
            defs += f", PRIMARY KEY ({', '.join(self.column(col) for col in primary_key)})"
        self.execute(f"CREATE TABLE IF NOT EXISTS {self.table(name)} ({defs})")
        self._created.add(name)

    def text_type(self) -> str:
        if self.types is None:
            return "VARCHAR"
        return self.types.to_destination_type(
            {"name": "x", "data_type": "text", "nullable": True}, {"name": "x"}
        )

    def exists(self, name: str, dataset: str = DATASET) -> bool:
        try:
            self.execute(f"SELECT 1 FROM {self.table(name, dataset)} WHERE 1 = 0")
        except Exception:
            return False
        return True

    def _schema(self) -> str:
        return self.table(DATASET).rsplit(".", 1)[0]


def is_duckdb(pipeline: dlt.Pipeline) -> bool:
    return bool(pipeline.destination.destination_type.endswith(".duckdb"))


@contextmanager
def open_warehouse(pipeline: dlt.Pipeline, read_only: bool = False) -> Iterator[Warehouse]:
    """A `Warehouse` on `pipeline`'s destination (creating tables needs a pipeline that ran).

    `read_only`: on PostgreSQL every transaction of the session is read-only; a DuckDB file is
    read-only when its credentials say so (`destination_for(..., read_only=True)`).
    """
    with pipeline.sql_client() as client:
        if read_only and not is_duckdb(pipeline):
            client.execute_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        yield Warehouse(client, is_duckdb(pipeline), pipeline)


class DestinationUnavailableError(Exception):
    """The destination cannot be opened: held by another process beyond the wait (`busy`), a
    read-only DuckDB file that does not exist (`missing`), or anything else (`error`)."""

    def __init__(self, message: str, reason: Literal["busy", "missing", "error"]) -> None:
        super().__init__(message)
        self.reason = reason

    @classmethod
    def unreachable(cls, pipeline: dlt.Pipeline, exc: Exception) -> DestinationUnavailableError:
        """A destination whose connection failed, with the fix."""
        return cls(
            f"{pipeline.destination.destination_name} cannot be opened ({exc}); fix: check "
            "that it is reachable and its credentials",
            "error",
        )


@dataclass(frozen=True)
class DuckDbFile:
    """The DuckDB file a pipeline loads into, as dlt's resolved credentials open it."""

    path: str
    read_only: bool

    @property
    def name(self) -> str:
        return Path(self.path).name


# pipeline -> (its destination object, its file): a sync asks for the file at every hold
# (5-10 times), and each answer costs dlt a configuration resolution (~25 ms)
_FILES: WeakKeyDictionary[dlt.Pipeline, tuple[Any, DuckDbFile | None]] = WeakKeyDictionary()


def duckdb_file(pipeline: dlt.Pipeline) -> DuckDbFile | None:
    """The pipeline's DuckDB file; None for other destinations and for in-process databases.

    Resolved once per pipeline object and destination (a pipeline's credentials do not
    change under it: a new configuration comes with a new pipeline, as every sync builds).
    """
    if not is_duckdb(pipeline):
        return None
    known = _FILES.get(pipeline)
    if known is not None and known[0] is pipeline.destination:
        return known[1]
    file = _resolved_duckdb_file(pipeline)
    _FILES[pipeline] = (pipeline.destination, file)
    return file


def _resolved_duckdb_file(pipeline: dlt.Pipeline) -> DuckDbFile | None:
    credentials = pipeline.destination_client().config.credentials
    if not isinstance(credentials, DuckDbBaseCredentials) or credentials.external_conn():
        return None
    database = getattr(credentials, "database", None)
    if not isinstance(database, str) or database.startswith(":"):
        return None
    return DuckDbFile(database, bool(credentials.read_only))


def wait_setting(key: str, default: float) -> float:
    """A wait in seconds from dlt config (`scrapesync.<name>`), bounded to [0, 1 day]."""
    value: Any = dlt.config.get(key)
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number of seconds, got {value!r}") from None
    if not 0 <= seconds <= MAX_WAIT_S:
        raise ValueError(f"{key} must be between 0 and {MAX_WAIT_S:g} seconds, got {seconds:g}")
    return seconds


@contextmanager
def hold_destination(pipeline: dlt.Pipeline, wait_seconds: float | None = None) -> Iterator[None]:
    """Keep the pipeline's DuckDB file open in this process for the block (no-op elsewhere).

    Waits up to `wait_seconds` (default `scrapesync.duckdb_wait_seconds`) for another process
    to let go of the file, saying so once in the progress output; raises
    `DestinationUnavailableError` when it cannot be opened. Nested holds are cheap: the process
    already has the file open.
    """
    file = duckdb_file(pipeline)
    if file is None:
        yield
        return
    if wait_seconds is None:
        wait_seconds = wait_setting(FILE_WAIT_KEY, DEFAULT_FILE_WAIT_S)
    # DuckDB's memory budget adds to what the process already holds
    release_unused_memory()
    connection = open_duckdb_waiting(file, wait_seconds)
    try:
        yield
    finally:
        connection.close()


def release_unused_memory() -> None:
    """Give back to the system the memory freed since the extract: the allocators keep it.

    Arrow's allocator and glibc's heap hold on to the pages of freed Arrow tables and decoded
    responses (measured: 43 MB after a 200k-output extract), and the load then adds DuckDB's
    memory budget on top (docs/dlt-behaviours.md, "DuckDB memory and threads").
    """
    # no gc.collect(): Arrow pages die by reference count, and a full collection costs ~0.3 s
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def open_duckdb_waiting(file: DuckDbFile, wait_seconds: float) -> Any:
    """A connection to `file`, retried while another process holds it, up to `wait_seconds`."""
    import duckdb

    deadline = time.monotonic() + wait_seconds
    pause, announced = 0.1, False
    while True:
        try:
            # the same settings dlt opens it with, so dlt's connections share this instance
            return duckdb.connect(database=file.path, read_only=file.read_only, config={})
        except duckdb.Error as exc:
            if LOCK_HELD not in str(exc):
                message = describe_open_error(file, exc)
                raise DestinationUnavailableError(message, _reason(exc)) from exc
            pid = _HOLDER_PID.search(str(exc))
            holder = f" (PID {pid.group(1)})" if pid else ""
            left = deadline - time.monotonic()
            if left <= 0:
                raise DestinationUnavailableError(
                    f"{file.name} is held by another process{holder} beyond the "
                    f"{wait_seconds:g} s wait; let that run finish or raise "
                    "SCRAPESYNC__DUCKDB_WAIT_SECONDS",
                    "busy",
                ) from exc
            if not announced:
                logger.warning(
                    f"waiting for {file.name}, held by another process{holder}; "
                    f"up to {wait_seconds:g} s"
                )
                announced = True
            time.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)


def _reason(exc: BaseException) -> Literal["missing", "error"]:
    return "missing" if "database does not exist" in str(exc) else "error"


def describe_open_error(file: DuckDbFile, exc: BaseException) -> str:
    """Why `file` cannot be opened, and the fix."""
    folder = Path(file.path).parent
    text = str(exc)
    if "database does not exist" in text:
        return f"{file.path} does not exist yet (no sync has written it)"
    if "No such file or directory" in text:
        fix = f"create the directory {folder} or point DESTINATION__DUCKDB__CREDENTIALS elsewhere"
    elif "Read-only file system" in text or "Permission denied" in text:
        fix = f"make {folder} writable or point DESTINATION__DUCKDB__CREDENTIALS elsewhere"
    else:
        fix = "check the file and DESTINATION__DUCKDB__CREDENTIALS"
    return f"{file.path} cannot be opened ({text.splitlines()[0]}); fix: {fix}"
