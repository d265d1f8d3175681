"""Bad input from every provider: wrong types, missing cursors, unknown enums, schema drift,
pagination that loops or stops early.

One table of cases runs against each provider's main list answer (one test per provider, the
cases in sequence so each sync builds on the last; the data changes between cases). The
sandbox answers normally and then changes the JSON (`mutate` faults). Each case states what the
sync must do:

* `ok`: load what the provider sent, equal to the truth (a new field becomes a column, a
  field that changes type keeps its value);
* `catch_up`: load what was read (an unknown state as sent, the run treated as still open)
  without losing the rest: the next clean sync completes it;
* an error text: stop with an error naming the provider and the endpoint, leaving the loaded
  data and the pipeline state exactly as they were.

After every case the fault is cleared and one clean sync must bring the destination to the
sandbox's truth: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_faults import Run, snapshot

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox import FaultRule
from scrapesync.sandbox.truth import read_rows
from scrapesync.sources.oxylabs import connect


@dataclass(frozen=True)
class Case:
    """One change to every matching object of the answer, and what the sync must do."""

    name: str
    op: str  # mutate op: set | drop | add | text
    field: str
    value: Any = None
    anchor: str = ""
    expect: str = "ok"  # ok | catch_up | a text the error must contain
    column: str | None = None  # ok: this column must now exist in `table` (schema drift)
    path: str | None = None  # another answer than the provider's usual one
    table: str | None = None  # where that answer's items land
    value_of: Callable[[Any], Any] | None = None  # `value` computed from the sandbox's API


@dataclass(frozen=True)
class Provider:
    path: str  # the list answer the cases change
    endpoint: str  # how an error names that endpoint
    table: str  # where its items land
    sandbox: dict[str, Any]
    options: dict[str, Any]
    cases: tuple[Case, ...]


NEW_FIELD = "crawl_region"
PROVIDERS: dict[str, Provider] = {
    "reworkd": Provider(
        r"^/v1/outputs/",
        "/v1/outputs/g-",
        "outputs",
        {"groups": ["g-a", "g-b"], "records_per_group": 300},
        {"page_size": 10},
        (
            Case("new field", "add", NEW_FIELD, "eu-west", "key_hash", column=NEW_FIELD),
            Case("field changes type", "set", "rating", "five stars", column="data__rating"),
            Case("cursor of wrong type", "set", "update_date", "yesterday", expect="malformed"),
            # a CREATE may lack it (create_date stands in, as in the oldest docs); a change not
            Case("cursor missing", "drop", "update_date", expect="malformed"),
            # whether an unknown change deletes the record is unknowable: refused, not guessed
            Case("unknown change_type", "set", "change_type", "RESTORE", expect="change_type"),
            Case("cursor repeats", "set", "next_cursor", 1, expect="pagination loops"),
            Case("pages stop early", "set", "next_cursor", None, expect="catch_up"),
        ),
    ),
    "scrapewise": Provider(
        r"^/api/scraper/load-history$",
        "/api/scraper/load-history",
        "jobs",
        {"runs_per_scraper": 3},
        {"page_size": 3},
        (
            Case("new field", "add", NEW_FIELD, "eu-west", "jobId", column=NEW_FIELD),
            Case("field changes type", "set", "itemsQuantity", "12 items"),
            Case("cursor of wrong type", "set", "started", "yesterday", expect="malformed"),
            # a run not started yet has none: kept, and never taken for the end of the list
            Case("cursor missing", "drop", "started"),
            Case("unknown state", "set", "state", "ARCHIVED", expect="catch_up", column="state"),
            Case("pages never end", "set", "totalPages", 1_000_000),
            Case("pages stop early", "set", "totalPages", 1, expect="catch_up"),
        ),
    ),
    "opencx": Provider(
        r"^/crawl/[^/]+/crawls$",
        "/crawl",
        "crawl_jobs",
        {"rate_limit": 1000},
        {"page_size": 2},
        (
            Case("new field", "add", NEW_FIELD, "eu-west", "datasource_id", column=NEW_FIELD),
            Case("field changes type", "text", "total_pages"),
            Case("cursor of wrong type", "set", "updated_at", "yesterday", expect="malformed"),
            # kept, never used for the watermark (the early stop goes by created_at)
            Case("cursor missing", "drop", "updated_at"),
            Case("unknown status", "set", "status", "queued", expect="catch_up", column="status"),
            # a valid cursor (the first datasource's), answered again and again
            Case(
                "cursor repeats",
                "set",
                "next",
                path=r"^/crawl$",
                value_of=lambda api: first_cursor(api.datasources),
                expect="pagination loops",
            ),
            Case("pages stop early", "set", "next", None, expect="catch_up"),
        ),
    ),
    "outscraper": Provider(
        r"^/tasks$",
        "/tasks",
        "tasks",
        {},
        {"page_size": 2},
        (
            Case("new field", "add", NEW_FIELD, "eu-west", "queue_task_id", column=NEW_FIELD),
            Case("field changes type", "set", "user_id", 42),
            Case("cursor of wrong type", "set", "updated", "yesterday", expect="malformed"),
            # every sync reads the whole listing: `updated` only tells what changed
            Case("cursor missing", "drop", "updated"),
            Case("unknown status", "set", "status", "ARCHIVED", expect="catch_up", column="status"),
            Case("pages never end", "set", "has_more", True),
            Case("pages stop early", "set", "has_more", False, expect="catch_up"),
            Case(
                "a result gets a new field",
                "add",
                NEW_FIELD,
                "eu-west",
                "place_id",
                path=r"^/requests/[^/]+$",
                table="request_results",
                column=NEW_FIELD,
            ),
            Case(
                "a result field changes type",
                "set",
                "rating",
                "N/A",
                path=r"^/requests/[^/]+$",
                table="request_results",
                column="rating__v_text",
            ),
        ),
    ),
    # results are not paged (one answer per job): no pagination cases
    "oxylabs": Provider(
        r"^/v1/queries/\d+/results$",
        "/v1/queries/",
        "results",
        {"schedules": 0},
        {},
        (
            Case("new field", "add", NEW_FIELD, "eu-west", "status_code", column=NEW_FIELD),
            Case("field changes type", "set", "parser_type", 7),
            Case("page number of wrong type", "set", "page", "one", expect="malformed"),
            # pages come in order: a page without its number takes its position
            Case("page number missing", "drop", "page"),
            Case("unknown job status", "set", "status", "queued", expect="catch_up"),
        ),
    ),
}


def first_cursor(rows: dict[str, dict[str, Any]]) -> str:
    """open.cx's cursor naming the first row of a `created_at`-ordered list."""
    first = min(rows.values(), key=lambda row: (row["created_at"], row["id"]))
    return base64.urlsafe_b64encode(first["id"].encode()).decode()


def columns(provider: str, table: str) -> set[str]:
    schema = pipeline_for(provider).default_schema
    return set(schema.tables[table]["columns"]) if table in schema.tables else set()


class OxylabsWork:
    """Oxylabs syncs collect submitted jobs: each case needs a few finished jobs to collect."""

    def __init__(self, run: Run) -> None:
        self.run, self.batch = run, 0

    def submit(self) -> None:
        self.batch += 1
        values = [f"shoes {self.batch}-{n}" for n in range(3)]
        connect(**self.run.options()).submitter.submit(values, "query", {"source": "google"})
        self.run.sandbox.advance()


def apply_case(run: Run, spec: Provider, case: Case) -> None:
    provider = run.provider
    before = snapshot(provider)
    rule = FaultRule(
        provider=provider,
        path=case.path or spec.path,
        kind="mutate",
        op=case.op,
        field=case.field,
        value=case.value_of(run.api) if case.value_of else case.value,
        anchor=case.anchor,
        times=None,
    )
    run.sandbox.faults.add(rule)
    run.sandbox.requests.clear()

    report = run.sync(**spec.options)

    run.sandbox.faults.clear()
    assert any(r.fault == "mutate" for r in run.sandbox.requests.entries(provider))
    if case.expect in ("ok", "catch_up"):
        assert report.ok, f"{case.name}: {report.error}"
        if case.expect == "ok":
            run.check_truth(case.name)
        if case.column:
            table = case.table or spec.table
            assert case.column in columns(provider, table), case.name
            values = {value for (value,) in read_rows(pipeline_for(provider), table, case.column)}
            if case.column == case.field:  # stored as sent
                assert case.value in values, f"{case.name}: {case.value!r} not in {values}"
            assert values - {None}, f"{case.name}: {case.column} holds nothing"
    else:
        assert not report.ok, f"{case.name}: the sync accepted it"
        assert report.error
        assert report.error.startswith(f"{provider}:"), report.error
        assert case.expect in report.error, f"{case.name}: {report.error}"
        assert spec.endpoint in report.error, f"{case.name}: {report.error}"
        assert snapshot(provider) == before, f"{case.name}: a failed sync changed data or state"

    clean = run.sync(**spec.options)
    assert clean.ok, f"after {case.name}: {clean.error}"
    run.check_truth(f"after {case.name}")


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_given_bad_input_then_each_sync_loads_it_correctly_or_fails_cleanly(
    make_sandbox: Any, isolated: Path, provider: str
) -> None:
    spec = PROVIDERS[provider]
    options = dict(spec.sandbox)
    if provider == "oxylabs":
        options["workdir"] = str(isolated / "oxylabs-sandbox")
    run = Run(make_sandbox(**{provider: options}), provider)
    work = OxylabsWork(run) if provider == "oxylabs" else None
    if work:
        work.submit()
    first = run.sync(**spec.options)
    assert first.ok, first.error

    for case in spec.cases:
        run.sandbox.advance()
        if work:
            work.submit()
        apply_case(run, spec, case)
