"""Pure transforms: one page of Reworkd outputs -> Arrow tables for `outputs` and `outputs__files`.

Building Arrow tables in the resource skips dlt's per-row normalizer, the dominant cost of a
dict-yielding pipeline (perf-facts §1: 200k outputs in ~17 s instead of ~50 s), so the
flattening dlt would do (`data__price`, child table `outputs__files`) is done here, once.

The fast path lets Arrow infer one struct type for the whole page and flattens it with compute
kernels (about 5x faster than building rows in Python). A page Arrow cannot type (a field
holding a number in one output and text in another) takes the row-by-row path, where such a
field becomes JSON text. Both paths give the same columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.libs.pyarrow import get_column_type_from_py_arrow

from scrapesync.sources.reworkd.settings import (
    CHANGE_TYPES,
    FILE_FIELDS,
    FLATTENED_FIELDS,
    SCALAR_FIELDS,
    TIMESTAMP_FIELDS,
)

UTC_TS = pa.timestamp("us", tz="UTC")
# `_version` = zero-padded (update_date in µs, id): sorts like "latest change wins, then id".
_VERSION_WIDTH = 20
OUTPUT_KEYS = ("group_id", "key_hash", "_version", "update_date", "value_hash")
INFERENCE_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)
# an undocumented top-level field is schema drift: it lands as a column (nested ones as JSON)
# rather than being dropped; the documented nested ones are flattened or go to `files`
KNOWN_FIELDS = frozenset((*SCALAR_FIELDS, *FLATTENED_FIELDS, "files"))
KNOWN_CHANGES = pa.array(CHANGE_TYPES, pa.string())
# fields without which an output cannot be placed: its cursor, its identity, its change
REQUIRED_FIELDS = ("id", "key_hash", "change_type", "create_date")


class MalformedOutputError(ValueError):
    """Outputs of a page that cannot be loaded as documented (a malformed response)."""


class MissingFieldsError(MalformedOutputError):
    """Outputs of a page lack documented fields."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"an output lacks {', '.join(names)}")
        self.names = names


FILES_SCHEMA = pa.schema(
    [
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("key_hash", pa.string(), nullable=False),
        pa.field("_version", pa.string(), nullable=False),
        ("update_date", UTC_TS),
        ("value_hash", pa.string()),
        pa.field("file_index", pa.int64(), nullable=False),
        *[
            (name, UTC_TS if name == "create_date" else pa.string())
            for name in FILE_FIELDS
            if name != "id"
        ],
        ("file_id", pa.string()),
        ("_deleted", pa.bool_()),
        ("_dlt_load_id", pa.string()),
    ]
)


def page_tables(
    items: list[dict[str, Any]], group_id: str, load_id: str
) -> tuple[pa.Table, pa.Table]:
    """The `outputs` and `outputs__files` tables of one page."""
    try:
        page = pa.array(items)
    except INFERENCE_ERRORS:
        outputs = outputs_table(items, group_id, load_id)
        return outputs, files_table(outputs, items, load_id)
    outputs = _finish_outputs(_struct_columns(page), group_id, load_id)
    return outputs, _struct_files(page, outputs, load_id)


# -- shared ------------------------------------------------------------------------------------
def parse_timestamps(values: pa.Array | list[Any]) -> pa.Array:
    """ISO 8601 strings (naive ones are UTC, as Reworkd's are) -> timestamp[us, UTC]."""
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


def _finish_outputs(columns: dict[str, pa.Array], group_id: str, load_id: str) -> pa.Table:
    """Typed timestamps, the key and bookkeeping columns, from raw flattened columns."""
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
    columns["group_id"] = pa.array([group_id] * size, pa.string())
    columns["_deleted"] = pc.fill_null(pc.equal(columns["change_type"], "DELETE"), False)
    columns["_version"] = version_keys(columns["update_date"], columns["id"])
    columns["_dlt_load_id"] = pa.array([load_id] * size, pa.string())
    # a column that is null on the whole page has no type yet; a later page will add it
    typed = {name: array for name, array in columns.items() if array.type != pa.null()}
    return with_required(pa.table(typed), ("group_id", "key_hash", "_version"))


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
    the cast. As dlt's row normalizer does, a value that casts losslessly is cast ("12" -> 12),
    and a column whose values do not fit goes to a variant column `<name>__v_<type>`.
    """
    for index, name in enumerate(table.column_names):
        target = ARROW_TYPES.get(loaded.get(name, ""))
        column = table.column(index)
        if target is None or column.type == target:
            continue
        try:
            table = table.set_column(index, name, pc.cast(column, target, safe=True))
        except INFERENCE_ERRORS:
            page_type = get_column_type_from_py_arrow(column.type)["data_type"]
            table = table.rename_columns(
                [f"{name}__v_{page_type}" if n == name else n for n in table.column_names]
            )
    return table


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


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _scalar(value: Any) -> Any:
    """A value as a column value: nested ones as JSON text, as `_text_column` makes them."""
    return _as_text(value) if isinstance(value, (Mapping, list)) else value


def _text_column(array: pa.Array) -> pa.Array:
    """Any column as text: strings stay, scalars are cast, nested values become JSON."""
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_nested(array.type) or pa.types.is_null(array.type):
        return pa.array([_as_text(value) for value in array.to_pylist()], pa.string())
    return pc.cast(array, pa.string())


def history_table(outputs: pa.Table) -> pa.Table:
    """Every change as a version row: `valid_from` = its update_date, `valid_to` set later."""
    table = outputs.drop_columns(["_deleted"])
    table = table.append_column("valid_from", table["update_date"])
    return table.append_column(pa.field("valid_to", UTC_TS), pa.nulls(table.num_rows, UTC_TS))


# -- fast path: Arrow infers the page's struct type ----------------------------------------------
def _struct_columns(page: pa.StructArray) -> dict[str, pa.Array]:
    present = {field.name for field in page.type}
    columns = {name: pc.struct_field(page, name) for name in SCALAR_FIELDS if name in present}
    for name in FLATTENED_FIELDS:
        if name in present and pa.types.is_struct(page.type.field(name).type):
            _flatten_struct(name, pc.struct_field(page, name), columns)
    for name in sorted(present - KNOWN_FIELDS):
        child = pc.struct_field(page, name)
        columns[name] = _text_column(child) if pa.types.is_nested(child.type) else child
    return columns


def _flatten_struct(prefix: str, array: pa.Array, into: dict[str, pa.Array]) -> None:
    for field in array.type:
        child = pc.struct_field(array, field.name)
        name = f"{prefix}__{field.name}"
        if pa.types.is_struct(field.type):
            if field.type.num_fields:
                _flatten_struct(name, child, into)
        else:
            into[name] = child


def _struct_files(page: pa.StructArray, outputs: pa.Table, load_id: str) -> pa.Table:
    """Files of live outputs plus one `_deleted` marker per output without files."""
    deleted = outputs["_deleted"].combine_chunks()
    names = {field.name for field in page.type}
    files = pc.struct_field(page, "files") if "files" in names else None
    has_files = (
        files is not None
        and pa.types.is_list(files.type)
        and pa.types.is_struct(files.type.value_type)
    )
    if not has_files:
        return _files_with_markers(outputs, None, None, None, load_id)
    assert files is not None
    parents = pc.cast(pc.list_parent_indices(files), pa.int64())
    flat = pc.list_flatten(files)
    position = pa.array(range(len(flat)), pa.int64())
    index = pc.subtract(position, pc.take(files.offsets, parents))
    keep = pc.invert(pc.take(deleted, parents))
    lengths = pc.fill_null(pc.list_value_length(files), 0)
    return _files_with_markers(
        outputs,
        pc.filter(parents, keep),
        pc.filter(index, keep),
        pc.filter(flat, keep),
        load_id,
        markers=pc.cast(pc.indices_nonzero(pc.or_(pc.equal(lengths, 0), deleted)), pa.int64()),
    )


def _files_with_markers(
    outputs: pa.Table,
    parents: pa.Array | None,
    index: pa.Array | None,
    flat: pa.Array | None,
    load_id: str,
    markers: pa.Array | None = None,
) -> pa.Table:
    if markers is None:
        markers = pa.array(range(outputs.num_rows), pa.int64())
    kept = 0 if parents is None else len(parents)
    rows = pc.take(
        outputs, pa.concat_arrays([parents, markers]) if parents is not None else markers
    )
    columns: dict[str, pa.Array] = {name: rows[name].combine_chunks() for name in OUTPUT_KEYS}
    marker_index = pa.array([-1] * len(markers), pa.int64())
    columns["file_index"] = (
        pa.concat_arrays([index, marker_index]) if index is not None else marker_index
    )
    present = {field.name for field in flat.type} if flat is not None else set()
    for name in FILE_FIELDS:
        target = "file_id" if name == "id" else name
        values = (
            _text_column(pc.struct_field(flat, name))
            if flat is not None and name in present
            else pa.nulls(kept, pa.string())
        )
        if name == "create_date":
            values = parse_timestamps(values)
        values = values.cast(FILES_SCHEMA.field(target).type)
        columns[target] = pa.concat_arrays([values, pa.nulls(len(markers), values.type)])
    columns["_deleted"] = pa.array([False] * kept + [True] * len(markers), pa.bool_())
    columns["_dlt_load_id"] = pa.array([load_id] * (kept + len(markers)), pa.string())
    return pa.Table.from_pydict(
        {field.name: columns[field.name] for field in FILES_SCHEMA}, schema=FILES_SCHEMA
    )


# -- slow path: rows built in Python -------------------------------------------------------------
def flatten(prefix: str, value: Mapping[str, Any], into: dict[str, Any]) -> None:
    """Flatten nested objects into `prefix__key__sub` entries; lists and scalars stay values."""
    for key, item in value.items():
        name = f"{prefix}__{key}"
        if isinstance(item, Mapping) and item:
            flatten(name, item, into)
        else:
            into[name] = item


def to_array(values: list[Any]) -> pa.Array:
    """An Arrow array of `values`; mixed or irregular values fall back to JSON text."""
    try:
        return pa.array(values)
    except INFERENCE_ERRORS:
        return pa.array([_as_text(value) for value in values], pa.string())


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts -> column lists, every column as long as `rows` (missing keys are None)."""
    columns: dict[str, list[Any]] = {}
    for index, row in enumerate(rows):
        for name, value in row.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * len(rows)
            column[index] = value
    return columns


def outputs_table(items: list[dict[str, Any]], group_id: str, load_id: str) -> pa.Table:
    """One Arrow row per output, built row by row (for pages Arrow cannot type)."""
    rows = []
    for item in items:
        row = {field: item.get(field) for field in SCALAR_FIELDS}
        row.update({name: _scalar(item[name]) for name in sorted(item.keys() - KNOWN_FIELDS)})
        for field in FLATTENED_FIELDS:
            nested = item.get(field)
            if isinstance(nested, Mapping):
                flatten(field, nested, row)
        rows.append(row)
    columns = {name: to_array(values) for name, values in _columns(rows).items()}
    return _finish_outputs(columns, group_id, load_id)


def files_table(outputs: pa.Table, items: Iterable[dict[str, Any]], load_id: str) -> pa.Table:
    """`outputs__files` built row by row: files of live outputs, a marker for the others."""
    parents: list[int] = []
    index: list[int] = []
    files: list[dict[str, Any]] = []
    markers: list[int] = []
    deleted = outputs["_deleted"].to_pylist()
    for row, item in enumerate(items):
        item_files = [] if deleted[row] else item.get("files") or []
        if not item_files:
            markers.append(row)
        for position, file in enumerate(item_files):
            parents.append(row)
            index.append(position)
            files.append({name: _as_text(file.get(name)) for name in FILE_FIELDS})
    flat = pa.array(files, pa.struct([(name, pa.string()) for name in FILE_FIELDS]))
    return _files_with_markers(
        outputs,
        pa.array(parents, pa.int64()),
        pa.array(index, pa.int64()),
        flat,
        load_id,
        markers=pa.array(markers, pa.int64()),
    )
