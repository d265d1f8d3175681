"""Typed columns of a page of Reworkd outputs, and the rules that refuse a malformed page.

`transform.py` shapes a page into the `outputs` and `outputs__files` tables; this module types
their columns (timestamps, the integer id, the sortable `_version` key), checks what the docs
promise (required fields, known change types; docs/reworkd.md#outputs), makes a page fit the
column types already loaded (`conform`: variant columns) and derives `outputs_history` rows.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

from scrapesync.sources.reworkd.settings import CHANGE_TYPES, SCALAR_FIELDS, TIMESTAMP_FIELDS

UTC_TS = pa.timestamp("us", tz="UTC")
# `_version` = zero-padded (update_date in µs, id): sorts like "latest change wins, then id".
_VERSION_WIDTH = 20
INFERENCE_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)
KNOWN_CHANGES = pa.array(CHANGE_TYPES, pa.string())
# fields without which an output cannot be placed: its cursor, its identity, its change
REQUIRED_FIELDS = ("id", "key_hash", "change_type", "create_date")
# columns of `outputs` (and `outputs_history`) that are not a record's own field: a field of
# `data`, `tags` or an undocumented one whose name normalizes to one of these is renamed
OWN_COLUMNS: Final = frozenset(
    (*SCALAR_FIELDS, "group_id", "_version", "_deleted", "_dlt_load_id", "valid_from", "valid_to")
)


class MalformedOutputError(ValueError):
    """Outputs of a page that cannot be loaded as documented (a malformed response)."""


class MissingFieldsError(MalformedOutputError):
    """Outputs of a page lack documented fields."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"an output lacks {', '.join(names)}")
        self.names = names


def parse_timestamps(values: pa.Array | list[Any]) -> pa.Array:
    """ISO 8601 strings (naive ones are UTC, as Reworkd's are) -> timestamp[us, UTC].

    Timestamps Arrow's JSON reader already made of such strings (naive, in UTC) are cast."""
    if isinstance(values, pa.Array) and pa.types.is_timestamp(values.type):
        if values.type.tz:  # a cast between zones keeps the instant
            return pc.cast(values, UTC_TS)
        return pc.assume_timezone(pc.cast(values, pa.timestamp("us")), "UTC")
    strings = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    if not pa.types.is_string(strings.type):
        strings = pc.cast(strings, pa.string())
    try:
        return pc.assume_timezone(pc.cast(strings, pa.timestamp("us")), "UTC")
    except pa.ArrowInvalid:
        # some values carry a zone suffix ("Z", "+02:00"); cast those one by one
        return pa.array([_parse_one(value) for value in strings.to_pylist()], UTC_TS)


def _parse_one(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return pc.assume_timezone(pc.cast(pa.scalar(value), pa.timestamp("us")), "UTC").as_py()
    except pa.ArrowInvalid:
        return pc.cast(pa.scalar(value), UTC_TS).as_py()


def version_keys(update_date: pa.Array, ids: pa.Array) -> pa.Array:
    """Sortable text key of each change: update_date first, then the change's `id`."""
    micros = pc.cast(pc.cast(update_date, pa.timestamp("us")), pa.int64())
    return pc.binary_join_element_wise(
        pc.utf8_lpad(pc.cast(micros, pa.string()), _VERSION_WIDTH, "0"),
        pc.utf8_lpad(pc.cast(ids, pa.string()), _VERSION_WIDTH, "0"),
        ":",
    )


def finish_outputs(
    columns: dict[str, pa.Array], group_id: str | pa.Array, load_id: str
) -> pa.Table:
    """Typed timestamps, the key and bookkeeping columns, from raw flattened columns.

    `group_id`: the group of every output, or of each (an array as long as the page)."""
    missing = [name for name in REQUIRED_FIELDS if name not in columns or columns[name].null_count]
    if missing:
        raise MissingFieldsError(missing)
    for name in TIMESTAMP_FIELDS:
        if name in columns:
            columns[name] = _typed(name, "an ISO 8601 time", parse_timestamps, columns[name])
    _check_change_types(columns["change_type"])
    columns["update_date"] = _change_times(columns)
    size = len(next(iter(columns.values())))
    columns["id"] = _typed("id", "an integer", lambda ids: pc.cast(ids, pa.int64()), columns["id"])
    columns["group_id"] = (
        group_id if isinstance(group_id, pa.Array) else pa.array([group_id] * size, pa.string())
    )
    columns["_deleted"] = pc.fill_null(pc.equal(columns["change_type"], "DELETE"), False)
    columns["_version"] = version_keys(columns["update_date"], columns["id"])
    columns["_dlt_load_id"] = pa.array([load_id] * size, pa.string())
    # a column that is null on the whole page has no type yet; a later page will add it
    typed = {name: array for name, array in columns.items() if array.type != pa.null()}
    return with_required(pa.table(typed), ("group_id", "key_hash", "_version"))


def _typed(name: str, kind: str, cast: Callable[[pa.Array], pa.Array], values: pa.Array) -> Any:
    """`cast(values)`, or the error saying which documented field holds what instead."""
    try:
        return cast(values)
    except INFERENCE_ERRORS as exc:
        raise MalformedOutputError(f"`{name}` is not {kind} ({exc})") from None


def _check_change_types(change_types: pa.Array) -> None:
    """Refuse a change type the docs do not list: whether it deletes the record is unknown,
    and guessing would either resurrect deleted records or drop live ones."""
    unknown = pc.unique(pc.filter(change_types, pc.invert(pc.is_in(change_types, KNOWN_CHANGES))))
    if len(unknown):
        raise MalformedOutputError(
            f"unknown change_type {unknown.to_pylist()} (documented: {', '.join(CHANGE_TYPES)})"
        )


def _change_times(columns: dict[str, pa.Array]) -> pa.Array:
    """`update_date`, the cursor. The oldest doc version has none: a CREATE's change time is
    then its `create_date`. An UPDATE or DELETE without one cannot be placed in time (its
    `create_date` is the record's, older than the watermark): that page is malformed."""
    created = columns["create_date"]
    updated = columns.get("update_date")
    if updated is None:
        updated = pa.nulls(len(created), created.type)
    unplaced = pc.and_(pc.is_null(updated), pc.not_equal(columns["change_type"], "CREATE"))
    if pc.any(unplaced).as_py():
        raise MissingFieldsError(["update_date (on an UPDATE or DELETE change)"])
    return pc.coalesce(updated, created)


def with_required(table: pa.Table, names: Iterable[str]) -> pa.Table:
    """Mark key columns non-nullable, matching the table's primary-key hints."""
    schema = table.schema
    for name in names:
        index = schema.get_field_index(name)
        schema = schema.set(index, schema.field(index).with_nullable(False))
    return table.cast(schema)


def as_text(value: Any) -> str | None:
    """A value as text: strings stay, anything else becomes JSON."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def text_column(array: pa.Array) -> pa.Array:
    """Any column as text: strings stay, scalars are cast, nested values become JSON."""
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_list(array.type) and pa.types.is_string(array.type.value_type):
        fast = _json_string_lists(array)
        if fast is not None:
            return fast
    if pa.types.is_struct(array.type):
        fast = _json_flat_structs(array)
        if fast is not None:
            return fast
    if pa.types.is_nested(array.type) or pa.types.is_null(array.type):
        return pa.array([as_text(value) for value in array.to_pylist()], pa.string())
    return pc.cast(array, pa.string())


# characters JSON escapes: a string holding one is written by orjson instead
_JSON_ESCAPED = r'["\\\x00-\x1f]'


def _json_string_lists(lists: pa.Array) -> pa.Array | None:
    """Lists of strings as the JSON text orjson writes (`["a","b"]`), with compute kernels
    (image URL lists are on every page: ~5x faster than a value at a time); None when a
    value would need escaping or is null, for the general path."""
    values = pc.list_flatten(lists)
    if values.null_count or pc.any(pc.match_substring_regex(values, _JSON_ESCAPED)).as_py():
        return None
    joined = pc.binary_join(lists, '","')
    quoted = pc.binary_join_element_wise('["', joined, '"]', "")
    empty = pc.equal(pc.list_value_length(lists), 0)
    return pc.if_else(empty, pa.scalar("[]", pa.string()), quoted)


def _json_flat_structs(structs: pa.Array) -> pa.Array | None:
    """Objects of integers, booleans and strings (a file's `file_metadata`) as the JSON text
    orjson writes of their `to_pylist()` form (`{"width":800,"height":null}`), with compute
    kernels; None for any other shape, a key or string that needs escaping."""
    parts: list[Any] = []
    for index, field in enumerate(structs.type):
        value = _json_scalar(pc.struct_field(structs, index))
        if value is None or re.search(_JSON_ESCAPED, field.name):
            return None
        parts += [("{" if index == 0 else ",") + f'"{field.name}":', value]
    if not parts:
        return None
    text = pc.binary_join_element_wise(*parts, "}", "")
    return pc.if_else(pc.is_null(structs), pa.scalar(None, pa.string()), text)


def _json_scalar(values: pa.Array) -> pa.Array | None:
    """JSON text of each value (`null` for a null) for integer, boolean and string arrays."""
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(values, pa.string())
    elif pa.types.is_string(kind):
        if pc.any(pc.match_substring_regex(values, _JSON_ESCAPED)).as_py():
            return None
        text = pc.binary_join_element_wise('"', values, '"', "")
    else:
        return None
    return pc.fill_null(text, "null")


# dlt data types a page column can be cast to when an earlier load fixed the column's type
ARROW_TYPES: Final = {
    "bigint": pa.int64(),
    "double": pa.float64(),
    "text": pa.string(),
    "bool": pa.bool_(),
    "timestamp": UTC_TS,
}


def conform(table: pa.Table, loaded: Mapping[str, str]) -> pa.Table:
    """Make a page fit column types already loaded (`loaded`: column name -> dlt data type).

    The `data` of an output is the user's own schema, and a field changes type ("price": 12
    then "N/A"). dlt does not reconcile Arrow pages with its schema: the load would fail on
    the cast (docs/dlt-behaviours.md, "Arrow, Parquet and schema evolution"). As dlt's row
    normalizer does, a value that casts losslessly is cast ("12" -> 12), and a column whose
    values do not fit goes to a variant column `<name>__v_<type>`.
    """
    for index, name in enumerate(table.column_names):
        target = ARROW_TYPES.get(loaded.get(name, ""))
        column = table.column(index)
        if target is None or column.type == target:
            continue
        try:
            if pa.types.is_boolean(target) and not pa.types.is_null(column.type):
                # Arrow casts any non-zero number to true: 2 would be lost
                raise pa.ArrowInvalid(f"{column.type} is not a bool")
            table = table.set_column(index, name, pc.cast(column, target, safe=True))
        except INFERENCE_ERRORS:
            page_type = get_column_type_from_py_arrow(column.type)["data_type"]
            table = table.rename_columns(
                [f"{name}__v_{page_type}" if n == name else n for n in table.column_names]
            )
    return table


class ExtractTypes:
    """Column types of the `outputs` pages already extracted in this load, across groups.

    `conform` fits a page to the types dlt's schema knows, but a column first seen in this
    load is not in the schema until the load is normalised: two pages (of one group or two)
    that disagree on a new column's type would give Arrow tables dlt cannot write together
    ("Schema at index 1 was different"). The first page's type wins, as for loaded columns.
    """

    def __init__(self) -> None:
        self._load_id: str | None = None
        self._types: dict[str, str] = {}
        self._lock = threading.Lock()

    def conform(self, table: pa.Table, load_id: str, loaded: Mapping[str, str]) -> pa.Table:
        """`conform` against the loaded types, then this load's earlier pages."""
        with self._lock:
            if load_id != self._load_id:  # a new load: what earlier loads saw is in the schema
                self._load_id, self._types = load_id, {}
            table = conform(table, {**self._types, **loaded})
            for field in table.schema:
                if field.name in self._types or pa.types.is_null(field.type):
                    continue
                data_type = get_column_type_from_py_arrow(field.type).get("data_type")
                if data_type is not None:
                    self._types[field.name] = data_type
            return table


def history_table(outputs: pa.Table) -> pa.Table:
    """Every change as a version row: `valid_from` = its update_date, `valid_to` set later."""
    table = outputs.drop_columns(["_deleted"])
    table = table.append_column("valid_from", table["update_date"])
    return table.append_column(pa.field("valid_to", UTC_TS), pa.nulls(table.num_rows, UTC_TS))
