"""The page -> Arrow transforms: the fast (Arrow-typed) and row-by-row paths agree."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapesync.sandbox.reworkd import ReworkdAPI
from scrapesync.sources.reworkd.columns import MissingFieldsError, as_text, conform, text_column
from scrapesync.sources.reworkd.pages import read_items
from scrapesync.sources.reworkd.transform import files_table, outputs_table, page_tables


@pytest.fixture(scope="module")
def page() -> list[dict[str, Any]]:
    api = ReworkdAPI(groups=["g"], records_per_group=300, seed=3)
    for key in list(api.groups["g"].latest)[:20]:
        api.delete("g", key)
    return [orjson.loads(row) for row in api.groups["g"].encoded]


def slow_path(items: list[dict[str, Any]]) -> tuple[Any, Any]:
    outputs = outputs_table(items, "g", "load-1")
    return outputs, files_table(outputs, items, "load-1")


def sorted_files(table: Any) -> Any:
    return table.sort_by(
        [("key_hash", "ascending"), ("_version", "ascending"), ("file_index", "ascending")]
    )


def test_fast_and_row_paths_give_identical_tables(page: list[dict[str, Any]]) -> None:
    fast_outputs, fast_files = page_tables(page, "g", "load-1")
    slow_outputs, slow_files = slow_path(page)

    assert fast_outputs.equals(slow_outputs)
    assert sorted_files(fast_files).equals(sorted_files(slow_files))


def test_files_of_deleted_outputs_become_markers(page: list[dict[str, Any]]) -> None:
    outputs, files = page_tables(page, "g", "load-1")

    deleted_keys = {
        key
        for key, gone in zip(
            outputs["key_hash"].to_pylist(), outputs["_deleted"].to_pylist(), strict=True
        )
        if gone
    }
    assert len(deleted_keys) == 20
    rows = files.to_pylist()
    for row in rows:
        if row["key_hash"] in deleted_keys and row["_version"] in outputs["_version"].to_pylist():
            is_delete_version = row["_version"] in {
                version
                for version, gone in zip(
                    outputs["_version"].to_pylist(), outputs["_deleted"].to_pylist(), strict=True
                )
                if gone
            }
            if is_delete_version:
                assert row["_deleted"] is True
                assert row["file_index"] == -1
    live_files = sum(len(item["files"]) for item in page if item["change_type"] != "DELETE")
    assert sum(1 for row in rows if not row["_deleted"]) == live_files


def test_a_field_with_mixed_types_falls_back_to_json_text(page: list[dict[str, Any]]) -> None:
    items = copy.deepcopy(page[:10])
    items[0]["data"]["price"] = "call us"
    items[1]["data"]["rating"] = [1, "two"]

    outputs, files = page_tables(items, "g", "load-1")

    prices = outputs["data__price"].to_pylist()
    assert prices[0] == "call us"
    assert prices[2] == str(items[2]["data"]["price"])
    assert outputs["data__rating"].to_pylist()[1] == '[1,"two"]'
    assert files.num_rows >= 1


def test_a_page_whose_outputs_have_no_files_gives_only_markers(page: list[dict[str, Any]]) -> None:
    items = copy.deepcopy(page[:5])
    for item in items:
        item["files"] = []

    _, files = page_tables(items, "g", "load-1")

    assert files.num_rows == 5
    assert set(files["_deleted"].to_pylist()) == {True}


def test_a_page_without_value_hash_gives_files_with_a_null_one(page: list[dict[str, Any]]) -> None:
    # `value_hash` is not needed to key a row: a page that lacks it still loads, on both paths
    items = copy.deepcopy(page[:5])
    for item in items:
        del item["value_hash"]

    for outputs, files in (page_tables(items, "g", "load-1"), slow_path(items)):
        assert files.num_rows >= outputs.num_rows
        assert set(files["value_hash"].to_pylist()) == {None}
        assert files.schema.field("value_hash").type == pa.string()


def test_an_output_without_its_cursor_is_refused(page: list[dict[str, Any]]) -> None:
    items = copy.deepcopy(page[:3])
    del items[1]["key_hash"]

    with pytest.raises(MissingFieldsError, match="key_hash"):
        page_tables(items, "g", "load-1")


def test_conform_casts_what_fits_and_moves_what_does_not_to_a_variant_column() -> None:
    page = pa.table(
        {
            "data__rating": pa.array(["five stars", None]),  # loaded as bigint: cannot cast
            "data__reviews": pa.array(["12", "7"]),  # loaded as bigint: casts losslessly
            "data__sku": pa.array([1, 2]),  # loaded as text: a number becomes its text
            "data__new": pa.array([True, False]),  # never loaded: left as it is
        }
    )
    loaded = {"data__rating": "bigint", "data__reviews": "bigint", "data__sku": "text"}

    table = conform(page, loaded)

    assert table.column_names == ["data__rating__v_text", "data__reviews", "data__sku", "data__new"]
    assert table["data__rating__v_text"].to_pylist() == ["five stars", None]
    assert table["data__reviews"].to_pylist() == [12, 7]
    assert table["data__sku"].to_pylist() == ["1", "2"]
    assert table["data__new"].type == pa.bool_()


def test_given_lists_then_a_page_of_empty_lists_when_shaped_then_both_pages_type_them_alike(
    page: list[dict[str, Any]],
) -> None:
    # regression (issue 15): `list<string>` then `list<null>` failed dlt's extract
    filled, empty = copy.deepcopy(page[:3]), copy.deepcopy(page[3:6])
    for item in empty:
        item["data"]["images"] = []

    first, _ = page_tables(filled, "g", "load-1")
    second, _ = page_tables(empty, "g", "load-1")

    assert first.schema.field("data__images").type == pa.string()
    assert second.schema.field("data__images").type == pa.string()
    assert second["data__images"].to_pylist() == ["[]"] * 3
    assert orjson.loads(first["data__images"][0].as_py()) == filled[0]["data"]["images"]


def test_given_price_and_Price_in_one_record_when_shaped_then_both_values_get_a_column(  # noqa: N802
    page: list[dict[str, Any]],
) -> None:
    # regression (issue 15): NameNormalizationCollision at extract
    items = copy.deepcopy(page[:2])
    items[0]["data"] |= {"price": 1.5, "Price": "2.5 EUR"}

    for outputs, _ in (page_tables(items, "g", "load-1"), slow_path(items)):
        price_columns = [name for name in outputs.column_names if name.startswith("data__price")]
        assert len(price_columns) == 2
        assert outputs["data__price"][0].as_py() == 1.5
        (other,) = set(price_columns) - {"data__price"}
        assert re.fullmatch(r"data__price_[0-9a-f]{8}", other)
        assert outputs[other][0].as_py() == "2.5 EUR"


def test_given_fields_named_like_dlt_and_scrapesync_columns_when_shaped_then_they_are_renamed(
    page: list[dict[str, Any]],
) -> None:
    # regression (issue 15): a `_dlt_id` field overwrote dlt's row id
    items = copy.deepcopy(page[:2])
    for index, item in enumerate(items):
        item |= {"_dlt_id": "same", "_DLT_LOAD_ID": index, "Group_Id": "theirs"}

    for outputs, _ in (page_tables(items, "g", "load-1"), slow_path(items)):
        assert "_dlt_id" not in outputs.column_names
        assert outputs["user_dlt_id"].to_pylist() == ["same", "same"]
        assert outputs["user_dlt_load_id"].to_pylist() == [0, 1]
        assert outputs["_dlt_load_id"].to_pylist() == ["load-1", "load-1"]
        assert outputs["user_group_id"].to_pylist() == ["theirs", "theirs"]
        assert outputs["group_id"].to_pylist() == ["g", "g"]


def test_given_a_key_with_the_path_separator_when_shaped_then_it_does_not_hide_a_nested_field(
    page: list[dict[str, Any]],
) -> None:
    items = copy.deepcopy(page[:1])
    items[0]["data"] |= {"seller__name": "flat", "seller": {"name": "nested"}}

    for outputs, _ in (page_tables(items, "g", "load-1"), slow_path(items)):
        assert outputs["data__seller__name"].to_pylist() == ["nested"]
        (flat,) = [
            name
            for name in outputs.column_names
            if name.startswith("data__seller__name_") and outputs[name][0].as_py() == "flat"
        ]
        assert flat


# JSON text built with compute kernels (lists of strings, flat objects) equals orjson's
_texts = st.one_of(st.none(), st.text(max_size=8))


@given(st.lists(st.one_of(st.none(), st.lists(_texts, max_size=4)), min_size=1, max_size=6))
def test_given_lists_of_strings_when_made_text_then_it_is_orjsons_text(
    values: list[list[str | None] | None],
) -> None:
    column = pa.array(values, pa.list_(pa.string()))
    assert text_column(column).to_pylist() == [as_text(value) for value in values]


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "width": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
                    "ok": st.one_of(st.none(), st.booleans()),
                    "label": _texts,
                }
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_given_flat_objects_when_made_text_then_it_is_orjsons_text_of_the_typed_values(
    values: list[dict[str, Any] | None],
) -> None:
    column = pa.array(
        values, pa.struct([("width", pa.int64()), ("ok", pa.bool_()), ("label", pa.string())])
    )
    assert text_column(column).to_pylist() == [as_text(value) for value in column.to_pylist()]


# -- a page read from its bytes (pages.py) gives the tables of the decoded page -----------------
_KEYS = st.one_of(
    st.sampled_from(("price", "Price", "a__b", "date", "files", "_dlt_id", "价格", "")),
    st.text(max_size=6),
)
_TIMES = st.sampled_from(
    (
        "2026-01-02T03:04:05",
        "2026-01-02T03:04:05.123456",
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05+02:00",
        "2026-01-02 03:04:05",
        "2026-01-02",
    )
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(2**63, 2**64 - 1),  # beyond int64: the reader would make it a double
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    _TIMES,  # text a JSON reader takes for a timestamp
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=6,
)
_FILES = st.lists(
    st.dictionaries(
        st.sampled_from(("id", "field", "s3_url", "create_date", "file_metadata", "extra")),
        st.one_of(_TIMES, st.text(max_size=4), st.integers(0, 9), st.none(),
                  st.fixed_dictionaries({"width": st.integers(0, 900)})),
    ),
    max_size=2,
)  # fmt: skip


@st.composite
def _outputs(draw: st.DrawFn) -> dict[str, Any]:
    """One output: the documented fields, drifting `data`, `tags`, files, an unknown field."""
    item: dict[str, Any] = {
        "id": draw(st.integers(1, 10**6)),
        "key_hash": draw(st.sampled_from(("k1", "k2", "k3"))),
        "change_type": draw(st.sampled_from(("CREATE", "UPDATE", "DELETE"))),
        "create_date": draw(_TIMES),
        "update_date": draw(_TIMES),
        "value_hash": draw(st.sampled_from(("v1", "v2"))),
        "data": draw(st.dictionaries(_KEYS, _VALUES, max_size=4)),
    }
    for name, values in (
        ("last_scraped_date", st.one_of(st.none(), _TIMES)),
        ("tags", st.dictionaries(_KEYS, _SCALARS, max_size=2)),
        ("files", _FILES),
        ("undocumented", _VALUES),
    ):
        if draw(st.booleans()):
            item[name] = draw(values)
    return item


def _tables_or_error(items: Any) -> Any:
    try:
        return page_tables(items, "g", "load-1")
    except MissingFieldsError as exc:
        return ("missing", exc.names)
    except (ValueError, KeyError) as exc:
        return (type(exc).__name__, str(exc).split(" (")[0])


@settings(max_examples=300, deadline=None)
@given(st.lists(_outputs(), min_size=1, max_size=4), st.booleans())
def test_given_any_page_when_read_from_its_bytes_then_its_tables_equal_the_decoded_ones(
    items: list[dict[str, Any]], pretty: bool
) -> None:
    document = {"metadata": {"next_url": None, "next_cursor": 7}, "items": items}
    body = orjson.dumps(document, option=orjson.OPT_INDENT_2 if pretty else 0)

    read = read_items(body)

    if read is not None:  # else the page goes to the dict path, as decoded
        structs, rest = read
        assert rest == {"metadata": document["metadata"]}
        expected = _tables_or_error(orjson.loads(body)["items"])
        got = _tables_or_error(structs)
        if isinstance(expected, tuple) and isinstance(expected[0], pa.Table):
            assert isinstance(got, tuple), got
            assert isinstance(got[0], pa.Table), got
            assert got[0].equals(expected[0], check_metadata=True), (got[0], expected[0])
            assert got[1].equals(expected[1], check_metadata=True)
        else:
            assert got == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"items":[{"a":[null,1]},{"a":[2]}]}',  # the reader shifts values after a leading null
        b'{"items":[{"n":9223372036854775808}]}',  # beyond int64: a double
        b'{"items":[{"a":1,"a":2}]}',  # a repeated key: orjson keeps the last
        b'{"items":[{"a":"\xff"}]}',  # not UTF-8
        b'{"items":{"a":1}}',  # `items` is not a list
        b'{"items":[{"data":{"rows":[{"x":1},{"y":2}]}}]}',  # objects in a list: JSON text
        b"[1, 2]",
    ],
)
def test_given_a_body_the_json_reader_would_read_otherwise_then_it_is_left_to_the_dicts(
    body: bytes,
) -> None:
    assert read_items(body) is None


def test_given_dates_in_data_when_read_from_bytes_then_they_stay_text() -> None:
    body = (
        b'{"metadata":{"next_cursor":null},"items":[{"id":1,"key_hash":"k","change_type":'
        b'"CREATE","create_date":"2026-01-02T03:04:05","value_hash":"v","data":{"day":"2026-01-02"}}]}'
    )
    read = read_items(body)

    assert read is not None
    structs, rest = read
    assert rest == {"metadata": {"next_cursor": None}}
    outputs, _ = page_tables(structs, "g", "load-1")
    assert outputs["data__day"].to_pylist() == ["2026-01-02"]
    assert outputs["create_date"].type == pa.timestamp("us", tz="UTC")
