"""One Arrow type per column: result rows -> Arrow tables that dlt can append to each other.

A task's files and a request's results arrive as JSON (typed) or CSV (all text), in many
batches; dlt writes the Arrow tables of one table into one file and fails when their schemas
differ. `ColumnTypes` keeps each column on one type; `ArrowBatcher` and `batched_tables` turn row
dicts into such tables. Arrow also skips dlt's per-row normalizer (docs/dlt-behaviours.md,
Arrow tables skip the normalizer).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dlt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.normalizers.naming.snake_case import NamingConvention as SnakeCase

from scrapesync.sources.common.shapes import USER_PREFIX, path_hash, safe_column_names
from scrapesync.sources.outscraper.transform import flatten


class ColumnTypes:
    """Keeps every column of one table on one Arrow type, across batches and files.

    dlt writes the Arrow tables of a table into one file and fails when their schemas differ,
    and a destination column has one type. So: names are normalized the way dlt does (JSON's
    `working_hours__Monday` and CSV's `working_hours.Monday` meet in `working_hours__monday`);
    the table's types already in the dlt schema win; a new column takes the type of its first
    non-null batch, CSV text being typed when every value is a plain integer or decimal
    (no leading zeros, so ids and zip codes stay text). A value that does not fit the column's
    type goes to a `<column>__v_text` column (dlt's own variant naming), never lost.
    """

    ARROW_TYPES: Mapping[str, pa.DataType] = {
        "text": pa.string(),
        "double": pa.float64(),
        "bigint": pa.int64(),
        "bool": pa.bool_(),
        "json": pa.string(),
    }

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self.known: dict[str, pa.DataType] | None = None

    def _seed(self) -> dict[str, pa.DataType]:
        known: dict[str, pa.DataType] = {}
        try:
            columns = dlt.current.source_schema().get_table_columns(self.table_name)
        except Exception:  # outside a pipeline (unit use) or a new table: nothing known
            columns = {}
        for name, column in columns.items():
            arrow_type = self.ARROW_TYPES.get(str(column.get("data_type")))
            if arrow_type is not None:
                known[name] = arrow_type
        return known

    def conform(self, table: pa.Table) -> pa.Table:
        if self.known is None:
            self.known = self._seed()
        names = _normalized(table.column_names)
        columns: dict[str, pa.Array] = {}
        for name, column in zip(names, table.columns, strict=True):
            array = column.combine_chunks()
            target = self.known.get(name)
            if target is None and not pa.types.is_null(array.type):
                target = self.known[name] = _inferred(array)
            if target is None or array.type == target:
                columns[name] = array
                continue
            typed, rest = _cast(array, target)
            columns[name] = typed
            if rest is not None:
                variant = f"{name}__v_text"
                columns[variant] = rest
                self.known.setdefault(variant, pa.string())
        return pa.table(columns)


_INT = r"^-?(0|[1-9][0-9]{0,17})$"
_DECIMAL = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"


def _normalized(names: list[str]) -> list[str]:
    """Column names as dlt would make them, renamed where dlt would merge two of them or take
    one for its own (the shared rule, sources/common/shapes.py: `Price` beside `price` ->
    `price_<h>`, `_dlt_id` -> `user_dlt_id`); a CSV header's `.` is a nested path (`__`)."""
    naming = SnakeCase()
    paths: list[str] = []
    for name in names:
        base = name.replace(".", "__") if naming.normalize_path(name) else "column"
        unique, count = base, 1
        while unique in paths:  # the same header twice (two blank ones): one column each
            count += 1
            unique = f"{base}_{count}"
        paths.append(unique)
    safe = safe_column_names(paths, (), naming)
    return [
        naming.normalize_path(new) if new == path else new
        for path, new in zip(paths, safe, strict=True)
    ]


def _inferred(array: pa.Array) -> pa.DataType:
    if not pa.types.is_string(array.type) or array.null_count == len(array):
        return array.type
    for pattern, arrow_type in ((_INT, pa.int64()), (_DECIMAL, pa.float64())):
        if pc.all(pc.match_substring_regex(array, pattern)).as_py() is not False:
            return arrow_type
    return pa.string()


def _cast(array: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """`array` as `target`, plus the values that do not fit as text (None when all fit).

    Booleans and numbers never go into each other's columns: Arrow casts `2` to `true` and
    `true` to `1`, which loses the value.
    """
    if not _bool_mismatch(array.type, target):
        try:
            return array.cast(target), None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    typed: list[Any] = []
    rest: list[str | None] = []
    for value in array.to_pylist():
        fits = _fitted(value, target)
        typed.append(fits)
        rest.append(_as_text(value) if fits is None and value is not None else None)
    return pa.array(typed, target), pa.array(rest, pa.string())


def _bool_mismatch(source: pa.DataType, target: pa.DataType) -> bool:
    """A cast between bool and anything but text (which spells `true` as `true`)."""
    return pa.types.is_boolean(source) != pa.types.is_boolean(target) and not (
        pa.types.is_string(target) and pa.types.is_boolean(source)
    )


def _fitted(value: Any, target: pa.DataType) -> Any:
    """`value` as `target`, or None when it does not fit losslessly."""
    if value is None or _bool_mismatch(pa.scalar(value).type, target):
        return None
    try:
        return pa.scalar(value).cast(target).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


class ArrowBatcher:
    """Row dicts -> Arrow tables (nested objects flattened, lists as JSON text)."""

    def __init__(self, fixed: Mapping[str, Any], types: ColumnTypes) -> None:
        self.fixed = dict(fixed)
        self.types = types

    def table(self, rows: list[dict[str, Any]], first_row: int) -> pa.Table:
        columns: dict[str, list[Any]] = {}
        for index, row in enumerate(rows):
            flat: dict[str, Any] = {}
            flatten("", row, flat)
            for name, value in flat.items():
                column = columns.get(name)
                if column is None:
                    column = columns[name] = [None] * len(rows)
                column[index] = value
        arrays = {name: _array(values) for name, values in columns.items()}
        data = self.types.conform(pa.table(arrays))
        return with_fixed_columns(data, self.fixed, first_row, len(rows))


def _array(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_as_text(value) for value in values], pa.string())
    if pa.types.is_struct(array.type) or pa.types.is_list(array.type):
        return pa.array([_as_text(value) for value in values], pa.string())
    return array


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def with_fixed_columns(
    table: pa.Table, fixed: Mapping[str, Any], first_row: int, rows: int | None = None
) -> pa.Table:
    """Prepend the identifying columns (task or request id, ...) and a `row_number`.

    `rows`: how many records `table` holds; records without a single field (`{}`) give a
    table without columns, whose length Arrow cannot tell: they still get their rows.
    """
    rows = table.num_rows if rows is None or table.num_columns else rows
    front = {name: pa.array([value] * rows) for name, value in fixed.items()}
    front["row_number"] = pa.array(range(first_row, first_row + rows), pa.int64())
    if not table.num_columns:
        return pa.table(front)
    for name in reversed(list(front)):
        if name in table.column_names:  # a data field of the same name: `user_<name>`
            table = table.rename_columns(
                [_theirs(name, table.column_names) if column == name else column
                 for column in table.column_names]
            )  # fmt: skip
        table = table.add_column(0, name, front[name])
    return table


def _theirs(name: str, taken: list[str]) -> str:
    """The column of a data field named like one scrapesync sets (shapes.py's rule)."""
    renamed = f"{USER_PREFIX}{name.lstrip('_')}"
    while renamed in taken:
        renamed = f"{renamed}_{path_hash([name, renamed])}"
    return renamed


def batched_tables(
    rows: Iterable[Any], fixed: Mapping[str, Any], types: ColumnTypes, batch_rows: int
) -> Iterator[pa.Table]:
    batcher = ArrowBatcher(fixed, types)
    batch: list[dict[str, Any]] = []
    done = 0
    for row in rows:
        batch.append(row if isinstance(row, dict) else {"value": row})
        if len(batch) == batch_rows:
            yield batcher.table(batch, done)
            done += len(batch)
            batch = []
    if batch:
        yield batcher.table(batch, done)
