"""Pure transforms: one page of Reworkd outputs -> Arrow tables for `outputs` and `outputs__files`.

Building Arrow tables in the resource skips dlt's per-row normalizer, the dominant cost of a
dict-yielding pipeline (perf-facts §1: 200k outputs in ~17 s instead of ~50 s), so the
flattening dlt would do (`data__price`, child table `outputs__files`) is done here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sources.reworkd.settings import FILE_FIELDS, FLATTENED_FIELDS, SCALAR_FIELDS, TIMESTAMP_FIELDS

UTC_TS = pa.timestamp("us", tz="UTC")
# `_version` = zero-padded (update_date in µs, id): sorts like "latest change wins, then id".
_VERSION_WIDTH = 20


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
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_as_text(value) for value in values], pa.string())


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def parse_timestamps(values: list[Any]) -> pa.Array:
    """ISO 8601 strings (naive ones are UTC, as Reworkd's are) -> timestamp[us, UTC]."""
    strings = pa.array(values, pa.string())
    try:
        return pc.assume_timezone(pc.cast(strings, pa.timestamp("us")), "UTC")
    except pa.ArrowInvalid:
        # some values carry a zone suffix ("Z", "+02:00"); cast those one by one
        return pa.array([_parse_one(value) for value in values], UTC_TS)


def _parse_one(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return pc.assume_timezone(pc.cast(pa.scalar(value), pa.timestamp("us")), "UTC").as_py()
    except pa.ArrowInvalid:
        return pc.cast(pa.scalar(value), UTC_TS).as_py()


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


def version_keys(update_date: pa.Array, ids: pa.Array) -> pa.Array:
    """Sortable text key of each change: update_date first, then the change's `id`."""
    micros = pc.cast(pc.cast(update_date, pa.timestamp("us")), pa.int64())
    return pc.binary_join_element_wise(
        pc.utf8_lpad(pc.cast(micros, pa.string()), _VERSION_WIDTH, "0"),
        pc.utf8_lpad(pc.cast(ids, pa.string()), _VERSION_WIDTH, "0"),
        ":",
    )


def outputs_table(items: list[dict[str, Any]], group_id: str, load_id: str) -> pa.Table:
    """One Arrow row per output: scalars, flattened `data`/`tags`, `_deleted`, `_version`."""
    rows = []
    for item in items:
        row = {field: item.get(field) for field in SCALAR_FIELDS}
        for field in FLATTENED_FIELDS:
            nested = item.get(field)
            if isinstance(nested, Mapping):
                flatten(field, nested, row)
        rows.append(row)
    columns = _columns(rows)
    # the oldest doc version has no `update_date`: a record's change time is then its creation
    columns["update_date"] = [
        updated or created
        for updated, created in zip(columns["update_date"], columns["create_date"], strict=True)
    ]
    arrays = {
        name: parse_timestamps(values) if name in TIMESTAMP_FIELDS else to_array(values)
        for name, values in columns.items()
    }
    arrays["id"] = pc.cast(arrays["id"], pa.int64())
    size = len(items)
    arrays["group_id"] = pa.array([group_id] * size, pa.string())
    arrays["_deleted"] = pc.equal(arrays["change_type"], pa.scalar("DELETE"))
    arrays["_version"] = version_keys(arrays["update_date"], arrays["id"])
    arrays["_dlt_load_id"] = pa.array([load_id] * size, pa.string())
    table = pa.table(_drop_null_columns(arrays))
    return with_required(table, ("group_id", "key_hash", "_version"))


def with_required(table: pa.Table, names: Iterable[str]) -> pa.Table:
    """Mark key columns non-nullable, matching the table's primary-key hints."""
    schema = table.schema
    for name in names:
        index = schema.get_field_index(name)
        schema = schema.set(index, schema.field(index).with_nullable(False))
    return table.cast(schema)


def _drop_null_columns(arrays: dict[str, pa.Array]) -> dict[str, pa.Array]:
    # a column that is null on the whole page has no type yet; a later page will add it
    return {name: array for name, array in arrays.items() if array.type != pa.null()}


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


def files_table(outputs: pa.Table, items: Iterable[dict[str, Any]], load_id: str) -> pa.Table:
    """One row per file of each output, plus one `_deleted` marker row per output without files.

    The marker row (file_index -1) puts the output's key into the merge so its earlier files
    are removed when a new version has no files or the output was deleted.
    """
    rows: list[dict[str, Any]] = []
    key_columns = ("group_id", "key_hash", "_version", "update_date", "value_hash")
    keys = zip(*(outputs[name].to_pylist() for name in key_columns), strict=True)
    deleted_flags = outputs["_deleted"].to_pylist()
    for key, deleted, item in zip(keys, deleted_flags, items, strict=True):
        base = dict(zip(key_columns, key, strict=True))
        files = [] if deleted else item.get("files") or []
        if not files:
            rows.append({**base, "file_index": -1, "_deleted": True})
        for index, file in enumerate(files):
            row = {**base, "file_index": index, "_deleted": False, "file_id": file.get("id")}
            row.update({name: file.get(name) for name in FILE_FIELDS if name != "id"})
            row["file_metadata"] = _as_text(row["file_metadata"])
            rows.append(row)
    columns = _columns(rows) if rows else {}
    arrays = []
    for schema_field in FILES_SCHEMA:
        values = columns.get(schema_field.name, [None] * len(rows))
        if schema_field.name == "_dlt_load_id":
            values = [load_id] * len(rows)
        if schema_field.name == "create_date":
            arrays.append(parse_timestamps(values))
        else:
            arrays.append(
                pa.array([_coerce(v, schema_field.type) for v in values], schema_field.type)
            )
    return pa.Table.from_arrays(arrays, schema=FILES_SCHEMA)


def _coerce(value: Any, arrow_type: pa.DataType) -> Any:
    if arrow_type == pa.string() and value is not None and not isinstance(value, str):
        return _as_text(value)
    return value
