"""Result files -> Arrow tables, streamed in bounded batches.

A task's result file can be hundreds of MB (docs/outscraper.md#result-files), so it is never
held in memory: the body is read from the socket in chunks, the format is picked from the first
bytes (not the URL, which may be a pre-signed storage link without an extension, nor only the
Content-Type, which storage hosts often send as `application/octet-stream`), and rows leave as
Arrow tables of `RESULT_BATCH_ROWS` rows, typed by `ColumnTypes` (columns.py).

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
from collections.abc import Iterator, Mapping
from typing import Any

import ijson
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from requests import RequestException, Response
from urllib3.exceptions import HTTPError as Urllib3Error

from scrapesync.sources.common.errors import ProviderAPIError, malformed_response, safe_path
from scrapesync.sources.outscraper.client import PROVIDER, SPEC, outscraper_error
from scrapesync.sources.outscraper.columns import ColumnTypes, batched_tables, with_fixed_columns
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
            why = f"the result file is an HTML/XML page, not CSV or JSON (starts {head[:60]!r})"
            hint = (
                "nothing of this sync was loaded; run the sync again later (a storage or proxy "
                "error page stood in for the file)"
            )
            raise malformed_response(SPEC, response, why, hint=hint)
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
