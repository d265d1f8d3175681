"""Pure transforms: one page of Reworkd outputs -> Arrow tables for `outputs` and `outputs__files`.

Building Arrow tables in the resource skips dlt's per-row normalizer, the dominant cost of a
dict-yielding pipeline (docs/reworkd.md#why-arrow-pages: 200k outputs in ~17 s instead of
~50 s), so the flattening dlt would do (`data__price`, child table `outputs__files`) is done
here, once. Typing the columns and the checks that refuse a malformed page are in `columns.py`.

The fast path lets Arrow infer one struct type for the whole page (or takes the struct array
`pages.py` read from the response bytes) and flattens it with compute kernels (about 5x faster
than building rows in Python). A page Arrow cannot type (a field holding a number in one
output and text in another) takes the row-by-row path, where such a field becomes JSON text.
Both paths give the same columns.

Lists are JSON text on both paths: an Arrow list column takes its item type from the page
(`list<string>`, or `list<null>` on a page whose lists are all empty), and dlt cannot write two
pages of one table with different types into one file. Field names that dlt would merge
(`Price` and `price`) or take for its own (`_dlt_id`, `group_id`) are renamed by
`sources/common/shapes.py` (README, "Faults, bad answers and secrets"): every value is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from scrapesync.sources.common.shapes import path_hash, safe_column_names
from scrapesync.sources.reworkd.columns import (
    INFERENCE_ERRORS,
    OWN_COLUMNS,
    UTC_TS,
    as_text,
    finish_outputs,
    parse_timestamps,
    text_column,
)
from scrapesync.sources.reworkd.settings import FILE_FIELDS, FLATTENED_FIELDS, SCALAR_FIELDS

# a column of the record's own fields, by the path of keys that leads to it
Path = tuple[str, ...]

OUTPUT_KEYS = ("group_id", "key_hash", "_version", "update_date", "value_hash")
# an undocumented top-level field is schema drift: it lands as a column (nested ones as JSON)
# rather than being dropped; the documented nested ones are flattened or go to `files`
KNOWN_FIELDS = frozenset((*SCALAR_FIELDS, *FLATTENED_FIELDS, "files"))

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
    items: list[dict[str, Any]] | pa.StructArray, group_id: str | pa.Array, load_id: str
) -> tuple[pa.Table, pa.Table]:
    """The `outputs` and `outputs__files` tables of one page.

    `items` are the decoded outputs, or a struct array of them read from the page's bytes
    (`pages.py`, which leaves a page whose lists hold objects to the dicts); `group_id` is the
    group of every output, or of each (a batch of several groups' pages)."""
    if isinstance(items, pa.StructArray):
        if objects_in_lists(items.type):
            raise ValueError("page_tables: a list of objects needs the items as decoded")
        outputs = finish_outputs(_struct_columns(items), group_id, load_id)
        return outputs, _struct_files(items, outputs, load_id)
    try:
        page = pa.array(items)
    except INFERENCE_ERRORS:
        page = None
    if page is None or objects_in_lists(page.type):
        # Arrow gives every object of a list every key of the page (null where absent): the
        # JSON text of such a list is built from the items as sent instead
        outputs = outputs_table(items, group_id, load_id)
        return outputs, files_table(outputs, items, load_id)
    outputs = finish_outputs(_struct_columns(page), group_id, load_id)
    return outputs, _struct_files(page, outputs, load_id)


def objects_in_lists(page: pa.DataType) -> bool:
    """Whether a field of `data`, `tags` or an undocumented one holds a list of objects
    (`files`, documented, is shaped apart)."""
    return any(_holds_objects(field.type, False) for field in page if field.name != "files")


def _holds_objects(kind: pa.DataType, in_list: bool) -> bool:
    if pa.types.is_struct(kind):
        return in_list or any(_holds_objects(field.type, False) for field in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _holds_objects(kind.value_type, True)
    return False


# -- fast path: Arrow infers the page's struct type ----------------------------------------------
def _struct_columns(page: pa.StructArray) -> dict[str, pa.Array]:
    present = {field.name for field in page.type}
    columns = {name: pc.struct_field(page, name) for name in SCALAR_FIELDS if name in present}
    fields: dict[Path, pa.Array] = {}
    for name in FLATTENED_FIELDS:
        if name in present and pa.types.is_struct(page.type.field(name).type):
            _flatten_struct((name,), pc.struct_field(page, name), fields)
    for name in sorted(present - KNOWN_FIELDS):
        child = pc.struct_field(page, name)
        fields[(name,)] = text_column(child) if pa.types.is_nested(child.type) else child
    return columns | named_fields(fields)


def _flatten_struct(path: Path, array: pa.Array, into: dict[Path, pa.Array]) -> None:
    for field in array.type:
        child = pc.struct_field(array, field.name)
        if pa.types.is_struct(field.type):
            if field.type.num_fields:
                _flatten_struct((*path, field.name), child, into)
        else:
            into[(*path, field.name)] = (
                text_column(child) if pa.types.is_list(field.type) else child
            )


def named_fields(fields: dict[Path, Any]) -> dict[str, Any]:
    """Columns of the record's fields by name, sorted: nested paths joined by `__`.

    Two paths that join alike (a key `a__b` and `a` -> `b`) both stay: the one without `__` in
    its keys keeps the name, the other gets `<name>_<hash of its path>`. Then names dlt would
    merge or take for its own are renamed (sources/common/shapes.py).
    """
    joined: dict[str, list[Path]] = {}
    for path in fields:
        joined.setdefault("__".join(path), []).append(path)
    raw: dict[str, Path] = {}
    for name, paths in joined.items():
        for rank, path in enumerate(sorted(paths, key=lambda p: (any("__" in k for k in p), p))):
            raw[name if rank == 0 else f"{name}_{path_hash(path)}"] = path
    names = sorted(raw)
    safe = safe_column_names(names, OWN_COLUMNS)
    return {new: fields[raw[name]] for name, new in zip(names, safe, strict=True)}


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
    """`outputs__files` (both paths): each kept file (`flat`, with its parent row in `outputs`
    and its index), then one `_deleted` marker row per output in `markers` (all by default)."""
    if markers is None:
        markers = pa.array(range(outputs.num_rows), pa.int64())
    kept = 0 if parents is None else len(parents)
    rows = pc.take(
        outputs, pa.concat_arrays([parents, markers]) if parents is not None else markers
    )
    # `value_hash` may be absent from a whole page (only the keys are required)
    columns: dict[str, pa.Array] = {
        name: rows[name].combine_chunks()
        if name in rows.column_names
        else pa.nulls(len(rows), pa.string())
        for name in OUTPUT_KEYS
    }
    marker_index = pa.array([-1] * len(markers), pa.int64())
    columns["file_index"] = (
        pa.concat_arrays([index, marker_index]) if index is not None else marker_index
    )
    present = {field.name for field in flat.type} if flat is not None else set()
    for name in FILE_FIELDS:
        target = "file_id" if name == "id" else name
        values = (
            pc.struct_field(flat, name)
            if flat is not None and name in present
            else pa.nulls(kept, pa.string())
        )
        if name == "create_date":
            # read from the bytes, a file's time may already be a timestamp
            values = parse_timestamps(
                values if pa.types.is_timestamp(values.type) else text_column(values)
            )
        else:
            values = text_column(values)
        values = values.cast(FILES_SCHEMA.field(target).type)
        columns[target] = pa.concat_arrays([values, pa.nulls(len(markers), values.type)])
    columns["_deleted"] = pa.array([False] * kept + [True] * len(markers), pa.bool_())
    columns["_dlt_load_id"] = pa.array([load_id] * (kept + len(markers)), pa.string())
    return pa.Table.from_pydict(
        {field.name: columns[field.name] for field in FILES_SCHEMA}, schema=FILES_SCHEMA
    )


# -- slow path: rows built in Python -------------------------------------------------------------
def _scalar(value: Any) -> Any:
    """A value as a column value: nested ones as JSON text, as `text_column` makes them."""
    return as_text(value) if isinstance(value, (Mapping, list)) else value


def flatten(path: Path, value: Mapping[str, Any], into: dict[Path, Any]) -> None:
    """Flatten nested objects into entries by key path; lists become JSON text, as on the
    Arrow path, and an empty object holds no field (Arrow gives it no column either)."""
    for key, item in value.items():
        if isinstance(item, Mapping):
            if item:
                flatten((*path, key), item, into)
        else:
            into[(*path, key)] = as_text(item) if isinstance(item, list) else item


def to_array(values: list[Any]) -> pa.Array:
    """An Arrow array of `values`; mixed or irregular values fall back to JSON text."""
    try:
        return pa.array(values)
    except INFERENCE_ERRORS:
        return pa.array([as_text(value) for value in values], pa.string())


def _columns(rows: list[dict[Any, Any]]) -> dict[Any, list[Any]]:
    """Row dicts -> column lists, every column as long as `rows` (missing keys are None)."""
    columns: dict[Any, list[Any]] = {}
    for index, row in enumerate(rows):
        for name, value in row.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * len(rows)
            column[index] = value
    return columns


def outputs_table(items: list[dict[str, Any]], group_id: str | pa.Array, load_id: str) -> pa.Table:
    """One Arrow row per output, built row by row (for pages Arrow cannot type)."""
    rows: list[dict[str, Any]] = []
    records: list[dict[Path, Any]] = []
    for item in items:
        rows.append({field: item.get(field) for field in SCALAR_FIELDS})
        record: dict[Path, Any] = {
            (name,): _scalar(item[name]) for name in sorted(item.keys() - KNOWN_FIELDS)
        }
        for field in FLATTENED_FIELDS:
            nested = item.get(field)
            if isinstance(nested, Mapping):
                flatten((field,), nested, record)
        records.append(record)
    columns = {name: to_array(values) for name, values in _columns(rows).items()}
    fields = {path: to_array(values) for path, values in _columns(records).items()}
    return finish_outputs(columns | named_fields(fields), group_id, load_id)


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
            files.append({name: as_text(file.get(name)) for name in FILE_FIELDS})
    flat = pa.array(files, pa.struct([(name, pa.string()) for name in FILE_FIELDS]))
    return _files_with_markers(
        outputs,
        pa.array(parents, pa.int64()),
        pa.array(index, pa.int64()),
        flat,
        load_id,
        markers=pa.array(markers, pa.int64()),
    )
