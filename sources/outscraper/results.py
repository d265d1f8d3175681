"""Result files and request results -> Arrow tables, streamed in bounded batches.

A task's result file can be hundreds of MB (api-notes §3.5), so it is never held in memory:
the body is read from the socket in chunks, the format is picked from the first bytes (not the
URL, which may be a pre-signed storage link without an extension, nor only the Content-Type,
which storage hosts often send as `application/octet-stream`), and rows leave as Arrow tables
of `RESULT_BATCH_ROWS` rows. Arrow also skips dlt's per-row normalizer (perf-facts §1).

* JSON: a top-level array of rows, an array of arrays (one per query), or an object whose
  `data` holds either; parsed incrementally with ijson. Nested objects are flattened into
  `parent__child` columns, lists are stored as JSON text.
* CSV: parsed by Python's `csv` over a text wrapper; an empty cell is NULL. CSV carries no types:
  a column is typed integer or decimal when all its values are plain numbers, else text
  (`ColumnTypes`). JSON files keep JSON's types; both meet in the same columns.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dlt
import ijson
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.normalizers.naming.snake_case import NamingConvention as SnakeCase
from requests import RequestException, Response
from urllib3.exceptions import HTTPError as Urllib3Error

from scrapesync.sources.common.errors import ProviderAPIError, safe_path
from scrapesync.sources.outscraper.client import PROVIDER, outscraper_error
from scrapesync.sources.outscraper.settings import DOWNLOAD_CHUNK_BYTES, RESULT_BATCH_ROWS

HEAD_BYTES = 64 * 1024
_NESTED_OBJECT = re.compile(rb'^\s*\{.*?"data"\s*:\s*\[\s*\[', re.S)


class _Prefixed(io.RawIOBase):
    """A raw stream that first returns the bytes already peeked, then the rest of `raw`."""

    def __init__(self, head: bytes, raw: Any) -> None:
        self._head = memoryview(head)
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if len(self._head):
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def flatten(prefix: str, value: Mapping[str, Any], into: dict[str, Any]) -> None:
    """Nested objects -> `prefix__key` entries; lists and scalars stay values."""
    for key, item in value.items():
        name = f"{prefix}__{key}" if prefix else str(key)
        if isinstance(item, Mapping) and item:
            flatten(name, item, into)
        else:
            into[name] = item


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
    naming = SnakeCase()
    result: list[str] = []
    for name in names:
        base = naming.normalize_path(name.replace(".", "__")) or "column"
        unique, count = base, 1
        while unique in result:
            count += 1
            unique = f"{base}_{count}"
        result.append(unique)
    return result


def _inferred(array: pa.Array) -> pa.DataType:
    if not pa.types.is_string(array.type) or array.null_count == len(array):
        return array.type
    for pattern, arrow_type in ((_INT, pa.int64()), (_DECIMAL, pa.float64())):
        if pc.all(pc.match_substring_regex(array, pattern)).as_py() is not False:
            return arrow_type
    return pa.string()


def _cast(array: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """`array` as `target`, plus the values that do not fit as text (None when all fit)."""
    try:
        return array.cast(target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    typed: list[Any] = []
    rest: list[str | None] = []
    for value in array.to_pylist():
        try:
            typed.append(pa.scalar(value).cast(target).as_py() if value is not None else None)
            rest.append(None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            typed.append(None)
            rest.append(_as_text(value))
    return pa.array(typed, target), pa.array(rest, pa.string())


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
        return with_fixed_columns(data, self.fixed, first_row)


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


def with_fixed_columns(table: pa.Table, fixed: Mapping[str, Any], first_row: int) -> pa.Table:
    """Prepend the identifying columns (task or request id, ...) and a `row_number`."""
    rows = table.num_rows
    front = {name: pa.array([value] * rows) for name, value in fixed.items()}
    front["row_number"] = pa.array(range(first_row, first_row + rows), pa.int64())
    for name in reversed(list(front)):
        if name in table.column_names:  # a data field of the same name: keep ours, rename theirs
            table = table.rename_columns(
                [f"{column}_" if column == name else column for column in table.column_names]
            )
        table = table.add_column(0, name, front[name])
    return table


def file_tables(
    response: Response,
    fixed: Mapping[str, Any],
    types: ColumnTypes,
    batch_rows: int = RESULT_BATCH_ROWS,
) -> Iterator[pa.Table]:
    """Stream one result file into Arrow tables; the parser is chosen from its first bytes."""
    raw = response.raw
    raw.decode_content = True  # undo gzip/deflate transfer encoding
    try:
        head = raw.read(HEAD_BYTES)
        kind = sniff(head, response.headers.get("Content-Type", ""))
        if kind == "markup":
            raise ProviderAPIError(
                PROVIDER,
                "GET",
                safe_path(response.url),
                response.status_code,
                "malformed response: the result file is an HTML/XML page, not CSV or JSON "
                f"(starts {head[:60]!r})",
                "nothing of this sync was loaded; run the sync again later (a storage or proxy "
                "error page stood in for the file)",
                response=response,
            )
        stream = io.BufferedReader(_Prefixed(head, raw), buffer_size=DOWNLOAD_CHUNK_BYTES)
        if kind == "csv":
            yield from csv_tables(stream, head, fixed, types, batch_rows)
        else:
            yield from json_tables(stream, head, fixed, types, batch_rows, response)
    except (Urllib3Error, RequestException, OSError) as exc:
        raise ProviderAPIError(
            PROVIDER,
            "GET",
            safe_path(response.url),
            response.status_code,
            f"the result file download broke off: {type(exc).__name__}: {exc}",
            "nothing of this sync was loaded; run the sync again (the file is read again)",
            response=response,
        ) from None
    finally:
        response.close()


def sniff(head: bytes, content_type: str) -> str:
    """`json` or `csv`, from the first bytes; the Content-Type only breaks a tie. `markup`
    for an HTML or XML page (a proxy's or the storage's error page answered with 200), which
    a CSV parser would otherwise read as one odd column."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] == b"<" or "html" in content_type:
        return "markup"
    if text[:1] in (b"[", b"{"):
        return "json"
    if text:
        return "csv"
    return "json" if "json" in content_type else "csv"


def json_tables(
    stream: Any,
    head: bytes,
    fixed: Mapping[str, Any],
    types: ColumnTypes,
    batch_rows: int,
    response: Response,
) -> Iterator[pa.Table]:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] == b"{":
        if len(head) < HEAD_BYTES:  # the whole (small) object is in hand: an error envelope?
            body = orjson.loads(head)
            message = outscraper_error(body)
            if message:
                raise ProviderAPIError(
                    PROVIDER,
                    "GET",
                    safe_path(response.url),
                    response.status_code,
                    f"error in a {response.status_code} body: {message}",
                    "the result file is not available; run the sync again later",
                    response=response,
                )
        prefix = "data.item.item" if _NESTED_OBJECT.match(text) else "data.item"
    else:
        nested = text[1:].lstrip()[:1] == b"["
        prefix = "item.item" if nested else "item"
    rows = ijson.items(stream, prefix, use_float=True)
    yield from batched_tables(rows, fixed, types, batch_rows)


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


def csv_tables(
    stream: Any,
    head: bytes,
    fixed: Mapping[str, Any],
    types: ColumnTypes,
    batch_rows: int = RESULT_BATCH_ROWS,
) -> Iterator[pa.Table]:
    """CSV rows through Python's `csv` over a text wrapper, `batch_rows` at a time.

    (Arrow's streaming CSV reader fed from a socket was measured to grow RSS with the file
    size: ~200 MB more for a 200 MB file; this path stays flat.)
    """
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
    names = csv_header(head)
    next(reader, None)
    done = 0
    batch: list[list[str]] = []
    for record in reader:
        batch.append(record)
        if len(batch) == batch_rows:
            yield _csv_table(batch, names, fixed, types, done)
            done += len(batch)
            batch = []
    if batch:
        yield _csv_table(batch, names, fixed, types, done)


def _csv_table(
    batch: list[list[str]],
    names: list[str],
    fixed: Mapping[str, Any],
    types: ColumnTypes,
    first_row: int,
) -> pa.Table:
    width = len(names)
    columns = [list(column) for column in zip(*(_padded(r, width) for r in batch), strict=True)]
    arrays = {}
    for name, values in zip(names, columns, strict=True):
        array = pa.array(values, pa.string())
        arrays[name] = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
    return with_fixed_columns(types.conform(pa.table(arrays)), fixed, first_row)


def _padded(record: list[str], width: int) -> list[str]:
    """A row with missing trailing cells gets empty ones; extra cells are dropped."""
    if len(record) == width:
        return record
    return (record + [""] * width)[:width]


def csv_header(head: bytes) -> list[str]:
    """Column names from the header row; blanks and repeats get unique names."""
    text = head.decode("utf-8-sig", errors="replace")
    header = next(csv.reader(io.StringIO(text)), [])
    names: list[str] = []
    for index, name in enumerate(header):
        base = name.strip() or f"column_{index}"
        unique, count = base, 1
        while unique in names:
            count += 1
            unique = f"{base}_{count}"
        names.append(unique)
    return names


def request_rows(data: Any) -> Iterator[dict[str, Any]]:
    """`/requests/{id}` `data`: one array per query (or one flat array) -> rows with indexes."""
    if not isinstance(data, list):
        return
    nested = any(isinstance(item, list) for item in data)
    queries = data if nested else [data]
    for query_index, rows in enumerate(queries):
        for row_index, row in enumerate(rows if isinstance(rows, list) else [rows]):
            record = row if isinstance(row, dict) else {"value": row}
            yield {"query_index": query_index, "row_index": row_index, **record}
