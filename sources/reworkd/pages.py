"""A page of Reworkd outputs read from its response bytes straight into Arrow.

Decoding a page into Python dicts and then letting Arrow infer a type over those dicts is most
of what the sync spends besides the network (about 20 ms per 1,000 outputs, under the
interpreter lock). Arrow's JSON reader reads the same bytes in about 8-12 ms without the lock,
on the thread that fetched the page. It reads a document as a table of one row, so the page's
`items` arrive as one list of structs: the same struct type `pyarrow.array` infers from the
decoded items, except where the reader differs from orjson + `pyarrow.array`, and there the
page is left to the dict path (`None`), which reads it exactly as before:

* a `null` element in any array (the reader drops a leading null of a list and shifts the
  values after it; a text scan finds such elements before reading);
* an integer beyond 64 bits (the reader makes it a double: any double of magnitude >= 2**63
  sends the page to the dict path);
* a repeated key, bytes that are not UTF-8, a body that is not one JSON object, `items` that
  is not a list of objects: the reader refuses, or the page is checked and refused;
* a list of objects in `data`, `tags` or an undocumented field: its JSON text must be made
  from the items as sent (`transform.py`).

The reader also takes text that looks like an ISO 8601 time for a timestamp. Where the docs
promise a time (`create_date`, `update_date`, `last_scraped_date`, a file's `create_date`)
that is what the transform makes of it anyway; anywhere else the page is read again with those
fields as text, so `data`'s values stay as sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from scrapesync.sources.reworkd.settings import ITEMS_SELECTOR, TIMESTAMP_FIELDS
from scrapesync.sources.reworkd.transform import objects_in_lists

# where the reader may keep a timestamp: the documented times (an output's, a file's)
TIME_PATHS = frozenset(
    [
        *((ITEMS_SELECTOR, name) for name in TIMESTAMP_FIELDS),
        (ITEMS_SELECTOR, "files", "create_date"),
    ]
)
# the smallest magnitude a double made from an integer beyond int64 has
BEYOND_INT64 = 2.0**63
# `null` after `[` or `,` and any JSON whitespace: an array element
_NULL_ELEMENT = re.compile(rb"[\[,][ \t\r\n]*null")


def read_items(body: bytes) -> tuple[pa.StructArray, dict[str, Any]] | None:
    """The page's items as one struct array and the rest of the document (`metadata`) as
    Python values, or None when the page must be decoded into dicts (see the module doc)."""
    if _null_in_array(body):
        return None
    table = _read(body, None)
    if table is None or not _has_item_list(table):
        return None
    if any(_stray_times(field.type, (field.name,)) for field in table.schema):
        table = _read(body, pa.schema([_untimed(field, (field.name,)) for field in table.schema]))
        if table is None:
            return None
    items = table.column(ITEMS_SELECTOR).combine_chunks().flatten()
    if pa.types.is_null(items.type):  # an empty page: no item to type
        items = pa.array([], pa.struct([]))
    if objects_in_lists(items.type) or any(_beyond_int64(leaf) for leaf in _leaves(table)):
        return None
    rest = table.drop_columns([ITEMS_SELECTOR]).to_pylist()[0]
    return items, rest


def _read(body: bytes, schema: pa.Schema | None) -> pa.Table | None:
    """`body` as a table (one row per JSON object), or None where the reader refuses it."""
    # a body holding a line break is pretty-printed: let objects span lines (slower)
    multiline = b"\n" in body.rstrip()
    parse = pj.ParseOptions(newlines_in_values=multiline, explicit_schema=schema)
    # one block for the whole body: an object may not straddle two blocks
    read = pj.ReadOptions(use_threads=False, block_size=len(body) + 2)
    try:
        table = pj.read_json(pa.py_buffer(body + b"\n"), read_options=read, parse_options=parse)
        table.validate(full=True)  # orjson refuses bytes that are not UTF-8; so does this
    except (pa.ArrowException, OverflowError):  # whatever the reader refuses: the dict path
        return None
    return table if table.num_rows == 1 else None


def _null_in_array(body: bytes) -> bool:
    """Whether a `null` follows `[` or `,` (only an array element does; in an object a key
    does): the reader mishandles such elements. A `null` inside a string may say yes too,
    which only costs the dict path."""
    return _NULL_ELEMENT.search(body) is not None


def _has_item_list(table: pa.Table) -> bool:
    """Whether the document's `items` is a list of objects (or an empty list)."""
    if ITEMS_SELECTOR not in table.column_names:
        return False
    kind = table.schema.field(ITEMS_SELECTOR).type
    if not pa.types.is_list(kind) or table.column(ITEMS_SELECTOR).null_count:
        return False
    return pa.types.is_struct(kind.value_type) or pa.types.is_null(kind.value_type)


def _stray_times(kind: pa.DataType, path: tuple[str, ...]) -> bool:
    """Whether a timestamp sits anywhere but at a documented time."""
    if pa.types.is_timestamp(kind):
        return path not in TIME_PATHS
    if pa.types.is_struct(kind):
        return any(_stray_times(field.type, (*path, field.name)) for field in kind)
    if pa.types.is_list(kind):
        return _stray_times(kind.value_type, path)
    return False


def _untimed(field: pa.Field, path: tuple[str, ...]) -> pa.Field:
    """`field` with every timestamp but the documented times as text (an explicit schema)."""
    kind = field.type
    if pa.types.is_timestamp(kind) and path not in TIME_PATHS:
        return field.with_type(pa.string())
    if pa.types.is_struct(kind):
        return field.with_type(pa.struct([_untimed(f, (*path, f.name)) for f in kind]))
    if pa.types.is_list(kind):
        return field.with_type(pa.list_(_untimed(kind.value_field, path)))
    return field


def _leaves(table: pa.Table) -> Iterator[pa.Array]:
    for column in table.columns:
        yield from _leaf_arrays(column.combine_chunks())


def _leaf_arrays(array: pa.Array) -> Iterator[pa.Array]:
    if isinstance(array, pa.StructArray):
        for child in array.flatten():
            yield from _leaf_arrays(child)
    elif isinstance(array, pa.ListArray):
        yield from _leaf_arrays(array.flatten())
    else:
        yield array


def _beyond_int64(leaf: pa.Array) -> bool:
    if not pa.types.is_floating(leaf.type) or not len(leaf):
        return False
    largest = pc.max(pc.abs(leaf)).as_py()
    return largest is not None and largest >= BEYOND_INT64
