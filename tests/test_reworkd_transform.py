"""The page -> Arrow transforms: the fast (Arrow-typed) and row-by-row paths agree."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pyarrow as pa
import pytest

from scrapesync.sandbox.reworkd import ReworkdAPI
from scrapesync.sources.reworkd.columns import MissingFieldsError, conform
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
