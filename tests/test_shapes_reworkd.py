"""Every shape of `data` Reworkd may send loads, and every value lands (issue 15, data shapes).

Reworkd's `data` is the user's own schema (docs/reworkd.md#outputs): any JSON object. The
sandbox serves generated records through the real HTTP API; the real source, dlt and DuckDB
load them; then every value of every record must be in its row, in the column the README's
bad-input table ("Faults, bad answers and secrets") names.

Bounds: 25 examples, no deadline, one sandbox per test, a fresh pipeline and DuckDB file per
example in its own temporary directory, pages of 2 outputs (so types drift between pages and
some pages hold only nulls or empty lists). About 40 s on this machine.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from shapes_oracle import load

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.reworkd import ReworkdAPI
from scrapesync.sources.reworkd import reworkd_source

NAMING = NamingConvention()
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    # shrinking a failing example re-runs whole syncs: minutes; the failure is reported as found
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# keys that collide after dlt's normalization, or that dlt or scrapesync use themselves
ODD_KEYS = ("Price", "price", "PRICE", "_dlt_id", "_dlt_load_id", "_dlt_parent_id", "a__b",
            "a b", "a-b", "价格", "名称", "", "key_hash", "_version")  # fmt: skip
KEYS = st.one_of(
    st.sampled_from(ODD_KEYS), st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=20),
    st.text(min_size=2000, max_size=6000).filter(bool),  # very long strings
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def datasets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """0-7 `data` objects over one small set of keys, so a key's type drifts between them."""
    keys = draw(st.lists(KEYS, min_size=1, max_size=5, unique=True))
    count = draw(st.integers(min_value=0, max_value=7))
    return [
        draw(st.dictionaries(st.sampled_from(keys), VALUES, max_size=len(keys)))
        for _ in range(count)
    ]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox.start_default({"reworkd": {"groups": ["seed"], "records_per_group": 0}})
    yield box
    box.stop()


def reworkd_api(sandbox: Sandbox) -> ReworkdAPI:
    api = sandbox.providers["reworkd"]
    assert isinstance(api, ReworkdAPI)
    return api


def serve(api: ReworkdAPI, group: str, datas: list[dict[str, Any]]) -> list[str]:
    """One CREATE per `data` in a new group; returns their key hashes."""
    api.add_group(group)
    keys = []
    for data in datas:
        key = api.create(group)
        rows = api.groups[group]
        index = rows.latest[key]
        rows.rows[index]["data"] = data
        rows.encoded[index] = orjson.dumps(rows.rows[index])
        keys.append(key)
    return keys


def sync(sandbox: Sandbox, group: str, workdir: Path) -> dict[str, dict[str, Any]]:
    """A real sync of one group into a new DuckDB file; `outputs` rows by key_hash."""
    api = sandbox.providers["reworkd"]
    options = {**api.source_options(sandbox.url("reworkd")), "group_ids": [group]}
    with load(reworkd_source(**options, page_size=2), "reworkd", workdir, f"shapes_{group}") as db:
        if not db.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name='outputs'").fetchone()[
            0
        ]:  # type: ignore[index]
            return {}
        cursor = db.sql("SELECT * FROM reworkd.outputs")
        names = [column[0] for column in cursor.description]
        return {
            row[names.index("key_hash")]: dict(zip(names, row, strict=True))
            for row in cursor.fetchall()
        }


def leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every value of a record, as the README says it lands: nested objects
    flattened, lists as JSON text, empty objects and nulls as no value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif value is not None:
        yield path, orjson.dumps(value).decode() if isinstance(value, list) else value


def canon(value: Any) -> str:
    """One spelling per value, whatever column type it landed in (a number cast to text, a
    JSON value as text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"n:{Decimal(repr(value)).normalize()}"
    try:
        number = Decimal(value)
    except InvalidOperation:
        return str(value)
    return f"n:{number.normalize()}" if number.is_finite() else str(value)


def column_of(path: tuple[str, ...]) -> re.Pattern[str]:
    """The columns the README's table allows for a value at `path`: its normalized name, the
    renamed forms (`<name>_<8 hex>`, `user_<name>` for a dlt name) and a variant
    `<name>__v_<type>` for a value whose type changed."""
    # Arrow columns are named by their joined path, which dlt normalizes segment by segment
    name = NAMING.normalize_path("__".join(path))
    head, _, last = name.rpartition("__")
    user = f"{head}__user_{last.lstrip('_')}" if head else f"user_{last.lstrip('_')}"
    return re.compile(
        rf"({re.escape(name)}|{re.escape(NAMING.normalize_path(user))})(_[0-9a-f]{{8}})*(__v_\w+)?"
    )


def assert_landed(data: dict[str, Any], row: dict[str, Any]) -> None:
    expected = [(column_of(("data", *path)), canon(value)) for path, value in leaves(data, ())]
    found = {
        name: canon(value)
        for name, value in row.items()
        if name.startswith("data__") and value is not None
    }
    assert len(found) == len(expected), (data, found)
    for pattern, value in expected:
        assert any(pattern.fullmatch(name) and found[name] == value for name in found), (
            pattern.pattern,
            value,
            found,
        )


@SETTINGS
@given(datas=datasets())
def test_given_any_data_shape_when_synced_then_every_value_lands_in_its_column(
    sandbox: Sandbox, datas: list[dict[str, Any]]
) -> None:
    api = reworkd_api(sandbox)
    group = f"g{len(api.groups)}"
    keys = serve(api, group, datas)
    with tempfile.TemporaryDirectory() as workdir:
        rows = sync(sandbox, group, Path(workdir))

    assert sorted(rows) == sorted(keys)
    for key, data in zip(keys, datas, strict=True):
        assert_landed(data, rows[key])


REGRESSIONS = {
    "empty lists after lists of strings": [{"images": ["a.jpg"]}] * 2 + [{"images": []}] * 2,
    "Price and price in one record": [{"Price": "2.5 EUR", "price": 2.5}],
    "a _dlt_id field": [{"_dlt_id": "same"}, {"_dlt_id": "same"}],
    "int, float and text between pages": [{"n": 1}] * 2 + [{"n": 1.5}] * 2 + [{"n": "x"}],
    "a bool then a number": [{"b": True}] * 2 + [{"b": 2}],
    "all-null page": [{"n": None}] * 2 + [{"n": 3}],
}


@pytest.mark.parametrize("datas", REGRESSIONS.values(), ids=REGRESSIONS.keys())
def test_given_a_shape_that_failed_before_when_synced_then_every_value_lands(
    sandbox: Sandbox, datas: list[dict[str, Any]], tmp_path: Path
) -> None:
    keys = serve(reworkd_api(sandbox), "regression", datas)

    rows = sync(sandbox, "regression", tmp_path)

    assert sorted(rows) == sorted(keys)
    for key, data in zip(keys, datas, strict=True):
        assert_landed(data, rows[key])
    ids = [row["_dlt_id"] for row in rows.values() if "_dlt_id" in row]
    assert len(set(ids)) == len(ids)
    assert os.path.exists(tmp_path / "shapes.duckdb")
