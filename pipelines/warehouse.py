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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common.destination.capabilities import DataTypeMapper
from dlt.destinations.sql_client import SqlClientBase

DATASET = "scrapesync"
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

    def ensure_table(self, name: str, columns: Columns) -> None:
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
def open_warehouse(pipeline: dlt.Pipeline) -> Iterator[Warehouse]:
    """A `Warehouse` on `pipeline`'s destination (creating tables needs a pipeline that ran)."""
    with pipeline.sql_client() as client:
        yield Warehouse(client, is_duckdb(pipeline), pipeline)
