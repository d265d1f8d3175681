"""Every shape of an Oxylabs parsed result loads, and every value lands (issue 15, data shapes).

A parsed result's `content` is the target page's own structure (docs/oxylabs.md#results): any
JSON object; a result page may also carry fields the docs do not list (schema drift). Each
example submits one job through the real submitter, the sandbox finishes it and answers its
results with generated parsed contents and extra fields; the real source, dlt and DuckDB load
them; then every value must be in its row, in the column the README's bad-input table ("Faults,
bad answers and secrets") names (tests/shapes_oracle.py).

Bounds: 20 examples, no deadline, no shrinking, one sandbox per test, a fresh journal,
pipeline and DuckDB file per example, 1-5 result pages per job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from shapes_oracle import SETTINGS, assert_landed, bool_mixed, documents, landed, load, without

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.base import SandboxRequest, SandboxResponse
from scrapesync.sandbox.oxylabs import OxylabsAPI
from scrapesync.sources.oxylabs import oxylabs_source
from scrapesync.sources.oxylabs.resources import connect
from scrapesync.sources.oxylabs.settings import RESULT_FIELDS
from scrapesync.sources.oxylabs.transform import RESULT_COLUMNS

RESULTS_ROUTE = r"/v1/queries/(?P<job_id>\d+)/results"
ODD = (*RESULT_COLUMNS, "Page", "JOB_ID", "results")
SET = tuple(name for name in RESULT_COLUMNS if name != "parsed")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    options = {"schedules": 0, "workdir": str(tmp_path / "sandbox")}
    box = Sandbox.start_default({"oxylabs": options})
    yield box
    box.stop()


class Served:
    """Result pages of the next job: generated parsed contents and extra fields."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        api = sandbox.providers["oxylabs"]
        assert isinstance(api, OxylabsAPI)
        self.api = api
        self.pages: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for index, (method, pattern, handler) in enumerate(api.routes):
            if method == "GET" and pattern.pattern == f"^{RESULTS_ROUTE}$":
                api.routes[index] = (method, pattern, self._answer(handler))

    def _answer(
        self, handler: Callable[[SandboxRequest, dict[str, str]], SandboxResponse]
    ) -> Callable[[SandboxRequest, dict[str, str]], SandboxResponse]:
        def answer(request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
            response = handler(request, args)
            pages = self.pages.get(args["job_id"])
            if response.status != 200 or pages is None:
                return response
            body = orjson.loads(response.body)
            for page, (content, extra) in zip(body["results"], pages, strict=True):
                page.update({**extra, "content": content})
            return SandboxResponse.raw_json(orjson.dumps(body))

        return answer


def sync(served: Served, contents: list[dict[str, Any]], extras: list[Any], workdir: Path) -> Any:
    """Submit one job of `len(contents)` pages, let it finish, sync it; returns the job id,
    what each page must show beyond the documented fields, and the DuckDB connection."""
    options = {
        **served.api.source_options(served.sandbox.url("oxylabs")),
        "journal_path": str(workdir / "journal.sqlite"),
    }
    before = set(served.api.jobs)
    report = connect(**options).submitter.submit(
        ["shapes"], "query", {"source": "google_search", "parse": True, "pages": len(contents)}
    )
    assert report.submitted == 1
    (job_id,) = set(served.api.jobs) - before
    pages = [
        (content, without(extras[index] if index < len(extras) else {}, RESULT_FIELDS))
        for index, content in enumerate(contents)
    ]
    served.pages[job_id] = pages
    served.api.advance()
    db = load(oxylabs_source(**options, scheduler=False), "oxylabs", workdir)
    return job_id, [{**extra, "parsed": content} for content, extra in pages], db


def check(served: Served, contents: list[dict[str, Any]], extras: list[Any], workdir: Path) -> None:
    job_id, expected, db = sync(served, contents, extras, workdir)
    with db:
        loaded = landed(db, "oxylabs", "results", ("job_id", "page"), SET)
    assert sorted(loaded) == [(job_id, page) for page in range(1, len(contents) + 1)]
    for page, document in enumerate(expected, 1):
        assert_landed(document, loaded[(job_id, page)])


@pytest.fixture
def served(sandbox: Sandbox) -> Served:
    return Served(sandbox)


@SETTINGS
@given(
    contents=st.integers(min_value=1, max_value=5).flatmap(
        lambda pages: documents(ODD, max_count=pages).filter(lambda found: len(found) == pages)
    ),
    extras=documents(ODD, max_count=5),
)
@example(  # parsed keys dlt would merge, or take for its own
    contents=[{"Price": 1, "price": "2", "_dlt_id": "x", "results": [{"_dlt_list_idx": 1}]}],
    extras=[{"JOB_ID": "other", "Page": 7, "_dlt_load_id": "x"}],
).via("regression")
@example(  # a list under an empty key once went into the parent table; an object under a
    # column scrapesync sets was replaced by scrapesync's value
    contents=[{"": [1, 2], "a": {"": ["x"]}}],
    extras=[{"": [True], "query": {"q": "mine"}, "source": ["mine"]}],
).via("regression")
def test_given_any_parsed_result_shape_when_synced_then_every_value_lands_in_its_column(
    served: Served, contents: list[dict[str, Any]], extras: list[Any]
) -> None:
    pages = [{**extra, "parsed": content} for content, extra in zip(contents, extras, strict=False)]
    assume(not any(bool_mixed(table) for table in (contents, extras, pages)))
    with tempfile.TemporaryDirectory() as workdir:
        check(served, contents, extras, Path(workdir))
