"""The data-shape oracle shared by the property tests of the dict-row providers (issue 15).

Scrapewise, open.cx, Outscraper (request results) and Oxylabs hand dlt dict rows: dlt flattens
nested objects into `a__b` columns and turns each list into a child table (`<table>__<path>`,
one row per item: a scalar item in `value`, a list item in the child table `…__list`). The
oracle walks a document the way the README's bad-input table ("Faults, bad answers and
secrets") says it lands and checks every value of it against what DuckDB holds: each value in
its column (its normalized name, or the renamed forms `user_<name>` and `<name>_<8 hex>`, or a
variant `<name>__v_<type>`), nothing more, nothing less.

Integers are generated within I-JSON's exact range (RFC 7493, ±(2**53 - 1)): a larger one in a
column that already holds doubles is cast to double by dlt and loses digits, which the README
states.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.common.normalizers.naming.snake_case import NamingConvention
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

NAMING = NamingConvention()
# the columns dlt adds to every row (and to every child table's row)
DLT_COLUMNS = frozenset(
    ("_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_list_idx", "_dlt_root_id")
)
EXACT_INT = 2**53 - 1
BIGINT_DOUBLE = float(2**63 - 1024)  # the largest double below 2**63
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    # shrinking a failing example re-runs whole syncs: minutes; the failure is reported as found
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# keys that collide after dlt's normalization, or that dlt uses itself
ODD_KEYS = ("Price", "price", "PRICE", "_dlt_id", "_dlt_load_id", "_dlt_parent_id",
            "_dlt_list_idx", "_DLT_ROOT_ID", "a__b", "a b", "a-b", "价格", "名称", "", "value",
            "list")  # fmt: skip
# U+0000 is left out: dlt's insert-values writer (DuckDB's default file format for dict rows)
# drops it from text, which the README states
TEXT = st.characters(codec="utf-8", exclude_characters="\x00")
# very long strings: 2,000-6,000 characters repeated from a short random text (random ones of
# that size exhaust Hypothesis' entropy budget for a page of documents)
LONG_TEXT = st.builds(
    lambda text, size: (text * size)[:size],
    st.text(TEXT, min_size=1, max_size=12),
    st.integers(min_value=2000, max_value=6000),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-EXACT_INT, max_value=EXACT_INT),
    # doubles within bigint's range: dlt casts an integral double into a bigint column with
    # no range check, and DuckDB then refuses the whole load (README; xfail regression tests)
    st.floats(min_value=-BIGINT_DOUBLE, max_value=BIGINT_DOUBLE),
    st.text(TEXT, max_size=20),
    LONG_TEXT,
)


def keys(extra: Iterable[str] = ()) -> st.SearchStrategy[str]:
    """Field names: odd ones (plus a provider's own columns) and any unicode."""
    return st.one_of(
        st.sampled_from((*ODD_KEYS, *extra)),
        st.text(TEXT, min_size=1, max_size=8),
    )


def values(names: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, lists and objects nested a few levels."""
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)
        ),
        max_leaves=8,
    )


@st.composite
def documents(
    draw: st.DrawFn, extra_keys: Iterable[str] = (), max_count: int = 7
) -> list[dict[str, Any]]:
    """0..max_count objects over one small set of keys, so a key's type drifts between them
    (and pages of them hold only nulls or empty lists)."""
    names = keys(extra_keys)
    pool = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    count = draw(st.integers(min_value=0, max_value=max_count))
    return [
        draw(st.dictionaries(st.sampled_from(pool), values(names), max_size=len(pool)))
        for _ in range(count)
    ]


def without(document: dict[str, Any], taken: Iterable[str]) -> dict[str, Any]:
    """`document` without the keys the API itself sends (the sandbox's own value would replace
    a generated one: that is the documented field, not drift). A key that only normalizes like
    one stays: it must land beside it."""
    names = set(taken)
    return {key: value for key, value in document.items() if key not in names}


def bool_mixed(documents: Iterable[dict[str, Any]]) -> bool:
    """Whether one field (one column or child-table column) holds a bool in one document and a
    number or text in another. dlt casts a later number into a bool column (`bool(2)` is
    `true`) and a text with `str2bool`: a known loss the README states, kept out of the
    property tests (the `a bool then a number` regression tests show it)."""
    kinds: dict[tuple[str, ...], set[bool]] = {}
    for document in documents:
        for where, value in _walk(document, (), ""):
            kinds.setdefault((re.sub(r"\\\[\d+\\\]", "[]", where),), set()).add(
                isinstance(value, bool)
            )
    return any(len(seen) > 1 for seen in kinds.values())


# -- what the README says a document becomes --------------------------------------------------
def segment(key: str) -> str:
    """The column-name forms one key may take: normalized, `user_…`, with `_<8 hex>`."""
    # dlt reads `__` in a key as its path separator, as in a nested object's column
    name = NAMING.normalize_path(key) if key and not key.isspace() else "_empty"
    head, _, last = name.rpartition("__")
    user = NAMING.normalize_path(
        f"{head}__user_{last.lstrip('_')}" if head else f"user_{last.lstrip('_')}"
    )
    return rf"(?:{re.escape(name)}|{re.escape(user)})(?:_[0-9a-f]{{8}})*"


def expected_leaves(document: dict[str, Any]) -> list[tuple[re.Pattern[str], str]]:
    """(where the value may be, its canonical text) for every value of `document`."""
    return [(re.compile(where), canon(value)) for where, value in _walk(document, (), "")]


def _walk(value: Any, columns: tuple[str, ...], at: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*columns, segment(key)), at)
    elif isinstance(value, list):
        table = "__".join(columns)
        for index, item in enumerate(value):
            here = f"{at}{table}\\[{index}\\]\\."
            if isinstance(item, list):
                yield from _walk(item, ("list",), here)
            elif isinstance(item, dict):
                yield from _walk(item, (), here)
            elif item is not None:
                yield f"{here}value(?:__v_\\w+)?", item
    elif value is not None:
        yield f"{at}{'__'.join(columns)}(?:__v_\\w+)?", value


def canon(value: Any) -> str:
    """One spelling per value, whatever column type it landed in (a number cast to text, an
    integral double cast to bigint): numbers compare as the double they are (integers are
    generated within a double's exact range)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ("True", "False"):  # a bool dlt cast into a text column (`str(True)`)
        return value.lower()
    if isinstance(value, (int, float, Decimal)):
        return _number(value)
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return str(value)
    return _number(number) if number.is_finite() else str(value)


def _number(number: float | Decimal) -> str:
    return f"n:{float(number) + 0.0!r}"  # + 0.0: -0.0 and 0 are one value


# -- what landed --------------------------------------------------------------------------------
def landed(
    db: duckdb.DuckDBPyConnection, dataset: str, table: str, key: Iterable[str], skip: Iterable[str]
) -> dict[tuple[Any, ...], dict[str, str]]:
    """Each root row of `table` (by its `key` columns) as {where: canonical value}: its own
    columns but `skip` and dlt's, and the rows of its child tables (`child[i].column`)."""
    key, skip = tuple(key), set(skip)
    tables = [
        name
        for (name,) in db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [dataset]
        ).fetchall()
        if name == table or name.startswith(f"{table}__")
    ]
    if table not in tables:
        return {}
    rows: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in tables:
        cursor = db.sql(f'SELECT * FROM "{dataset}"."{name}"')
        names = [column[0] for column in cursor.description]
        for index, values_ in enumerate(cursor.fetchall()):
            row = dict(zip(names, values_, strict=True))
            # Arrow tables get no `_dlt_id` (and have no child tables)
            row.setdefault("_dlt_id", f"{name}:{index}")
            rows[row["_dlt_id"]] = (name, row)
    out: dict[tuple[Any, ...], dict[str, str]] = {}
    for name, row in rows.values():
        root, where = _locate(rows, name, row)
        leaves = out.setdefault(tuple(rows[root][1][k] for k in key), {})
        for column, value in row.items():
            if value is None or column in DLT_COLUMNS or (name == table and column in skip):
                continue
            leaves[f"{where}{column}"] = canon(value)
    return out


def _locate(
    rows: dict[str, tuple[str, dict[str, Any]]], table: str, row: dict[str, Any]
) -> tuple[str, str]:
    """(the `_dlt_id` of the root row, the place `child[i].` of `row` below it)."""
    parent_id = row.get("_dlt_parent_id")
    if parent_id is None:
        return row["_dlt_id"], ""
    parent_table, parent = rows[parent_id]
    root, where = _locate(rows, parent_table, parent)
    suffix = table[len(parent_table) + 2 :]
    return root, f"{where}{suffix}[{row['_dlt_list_idx']}]."


def assert_landed(document: dict[str, Any], found: dict[str, str]) -> None:
    """Every value of `document` is in `found`, where the README says, and nothing else is."""
    expected = expected_leaves(document)
    assert len(found) == len(expected), short(
        ([pattern.pattern for pattern, _ in expected], sorted(found))
    )
    for pattern, value in expected:
        assert any(pattern.fullmatch(where) and found[where] == value for where in found), short(
            (pattern.pattern, value[:80], {where: text[:40] for where, text in found.items()})
        )


def short(value: Any) -> str:
    """A failure message that stays readable when a document holds 6,000-character texts."""
    text = repr(value)
    return text if len(text) < 1500 else f"{text[:1500]}... ({len(text)} characters)"


def load(
    source: Any, dataset: str, workdir: Path, name: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Run `source` through a new dlt pipeline into `workdir/shapes.duckdb` (a fresh working
    dir per example); returns a read-only connection to what landed."""
    database = workdir / "shapes.duckdb"
    pipeline = dlt.pipeline(
        name or f"shapes_{dataset}",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name=dataset,
        pipelines_dir=str(workdir / "dlt"),
    )
    pipeline.run(source)
    return duckdb.connect(str(database), read_only=True)
