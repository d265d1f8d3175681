"""Every shape of an Outscraper result loads, and every value lands (issue 15, data shapes).

A task's result file (JSON or CSV) and an async request's results hold the scraped records
(docs/outscraper.md#result-files, docs/outscraper.md#request-results): any JSON objects, or any
CSV header and cells. The sandbox serves generated files for two finished tasks (one CSV, one
JSON) and generated results for one finished request; the real source, dlt and DuckDB load them
(as Arrow tables, columns.py); then every value must be in its row, in the column the README's
bad-input table ("Faults, bad answers and secrets") names: nested objects flattened (`a__b`),
lists as JSON text, CSV text typed when a whole column is numbers.

Bounds: 20 examples, no deadline, no shrinking, one sandbox per test, a fresh pipeline and
DuckDB file per example, batches of 2 rows (so types drift between batches).
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from shapes_oracle import (
    LONG_TEXT,
    NAMING,
    SETTINGS,
    TEXT,
    canon,
    documents,
    keys,
    landed,
    load,
    short,
)

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.outscraper import OutscraperAPI
from scrapesync.sources.outscraper import outscraper_source

TASK_FIXED = ("task_id", "product_name", "file_index", "row_number")
REQUEST_FIXED = ("request_id", "query_index", "row_index", "row_number")
ODD = (*TASK_FIXED, *REQUEST_FIXED, "a.b", "working_hours.Monday", "value")
CELLS = st.one_of(
    st.just(""),
    st.text(TEXT, max_size=12),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    LONG_TEXT,
)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A header of 1-5 names and 0-6 rows of cells (empty ones are nulls)."""
    header = draw(st.lists(keys(ODD), min_size=1, max_size=5, unique=True))
    rows = draw(st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)), max_size=6))
    return header, rows


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox.start_default({"outscraper": {"tasks": 4, "rows_per_task": 3, "requests": 2}})
    yield box
    box.stop()


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 2 rows: a column's type is decided by one batch and drifts in the next."""
    monkeypatch.setattr("scrapesync.sources.outscraper.results.RESULT_BATCH_ROWS", 2)
    monkeypatch.setattr("scrapesync.sources.outscraper.resources.RESULT_BATCH_ROWS", 2)


class Served:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        api = sandbox.providers["outscraper"]
        assert isinstance(api, OutscraperAPI)
        self.api = api
        done = sorted((t for t in api.tasks.values() if t.status == "SUCCESS"), key=lambda t: t.id)
        self.csv_task, self.json_task = done[0], done[1]
        self.csv_task.fmt, self.json_task.fmt = "csv", "json"
        (self.request,) = [r for r in api.requests.values() if r.status == "Success"]

    def serve(
        self,
        table: tuple[list[str], list[list[str]]],
        records: list[dict[str, Any]],
        results: list[list[Any]],
    ) -> None:
        header, rows = table
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])  # "\r\n": a "\r" in a cell is quoted
        self.api._files[(self.csv_task.id, self.csv_task.version)] = buffer.getvalue().encode()
        self.api._files[(self.json_task.id, self.json_task.version)] = orjson.dumps(records)
        self.request.data = results


def sync(sandbox: Sandbox, workdir: Path) -> duckdb.DuckDBPyConnection:
    api = sandbox.providers["outscraper"]
    return load(
        outscraper_source(**api.source_options(sandbox.url("outscraper"))), "outscraper", workdir
    )


# -- what the README says a record becomes (Arrow tables: columns.py) -------------------------
def leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every value: nested objects flattened, lists as JSON text, empty
    objects and nulls as no value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif value is not None:
        yield path, orjson.dumps(value).decode() if isinstance(value, list) else value


def column_of(path: tuple[str, ...]) -> re.Pattern[str]:
    """The columns allowed for a value at `path`: its normalized name (a `.` is a nested
    path); `user_<name>` for a dlt or scrapesync name (`user_<name>__<field>` for an object
    under such a name); `_<8 hex>` / `_<n>` for a name taken twice; `<name>__v_text` for a
    value that does not fit the column's type."""
    raw = "__".join(path).replace(".", "__")
    name = NAMING.normalize_path(raw) if NAMING.normalize_path(raw) else "column"
    head, _, last = name.rpartition("__")
    user = f"{head}__user_{last.lstrip('_')}" if head else f"user_{last.lstrip('_')}"
    whole = f"user_{name.lstrip('_')}"  # an object under a name scrapesync sets, renamed whole
    forms = "|".join(re.escape(NAMING.normalize_path(form)) for form in (name, user, whole))
    return re.compile(rf"({forms})(_[0-9a-f]{{8}}|_\d+)*(__v_text)?")


def assert_landed(record: dict[str, Any], found: dict[str, str]) -> None:
    expected = [(column_of(path), canon(value)) for path, value in leaves(record, ())]
    assert len(found) == len(expected), short(([p.pattern for p, _ in expected], sorted(found)))
    for pattern, value in expected:
        assert any(pattern.fullmatch(name) and found[name] == value for name in found), short(
            (pattern.pattern, value[:80], {name: text[:40] for name, text in found.items()})
        )


def csv_records(header: list[str], rows: list[list[str]]) -> list[dict[str, Any]]:
    """What each CSV row holds: its non-empty cells under their (stripped) header."""
    names: list[str] = []
    for index, name in enumerate(header):
        base = name.strip() or f"column_{index}"
        unique, count = base, 1
        while unique in names:
            count += 1
            unique = f"{base}_{count}"
        names.append(unique)
    return [{n: cell for n, cell in zip(names, row, strict=True) if cell} for row in rows]


def check(
    served: Served,
    table: tuple[list[str], list[list[str]]],
    records: list[dict[str, Any]],
    results: list[list[Any]],
    workdir: Path,
) -> None:
    served.serve(table, records, results)
    with sync(served.sandbox, workdir) as db:
        files = landed(db, "outscraper", "task_results", ("task_id", "row_number"), TASK_FIXED)
        answers = landed(
            db, "outscraper", "request_results", ("request_id", "query_index", "row_index"),
            REQUEST_FIXED,
        )  # fmt: skip
    shown = {(served.csv_task.id, n): r for n, r in enumerate(csv_records(*table))}
    shown |= {(served.json_task.id, n): r for n, r in enumerate(records)}
    assert sorted(files) == sorted(shown)
    for key, record in shown.items():
        assert_landed(record, files[key])
    answered = {
        (served.request.id, query, row): record if isinstance(record, dict) else {"value": record}
        for query, rows in enumerate(results)
        for row, record in enumerate(rows)
    }
    assert sorted(answers) == sorted(answered)
    for place, record in answered.items():
        assert_landed(record, answers[place])


@pytest.fixture
def served(sandbox: Sandbox) -> Served:
    return Served(sandbox)


@SETTINGS
@given(
    table=csv_files(),
    records=documents(ODD),
    results=st.lists(documents(ODD, max_count=3), min_size=1, max_size=2),
)
@example(  # names dlt would merge or take; a bool column then a number; an empty object
    table=(["Price", "price", "_dlt_id", "", "task_id"], [["1", "x", "a", "b", "t"]] * 3),
    records=[{"b": True}, {"b": True}, {"b": 2, "a": {}, "a.b": 1, "A": {"B": 2}}],
    results=[[{"query_index": 9, "row_index": "x", "_dlt_load_id": 1}, {"a__b": 1, "a": {"b": 2}}]],
).via("regression")
def test_given_any_result_shape_when_synced_then_every_value_lands_in_its_column(
    served: Served,
    table: tuple[list[str], list[list[str]]],
    records: list[dict[str, Any]],
    results: list[list[Any]],
) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        check(served, table, records, results, Path(workdir))
