"""Every field open.cx may add to a datasource or job loads, and every value lands (issue 15).

open.cx documents its datasource, page-stats and crawl-job fields (docs/opencx.md#endpoints);
anything else it sends is schema drift and lands as columns, and the page stats' counters may
drift in type (int, float, text, null). The sandbox serves generated extra fields on every
datasource, its `page_stats` and every crawl job; the real source, dlt and DuckDB load them;
then every value must be in its row, in the column the README's bad-input table ("Faults, bad
answers and secrets") names (tests/shapes_oracle.py).

Bounds: 20 examples, no deadline, no shrinking, one sandbox per test (2 datasources with 2 jobs
each, and the crawls the sandbox starts), a fresh pipeline and DuckDB file per example.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from shapes_oracle import (
    NAMING,
    SCALARS,
    SETTINGS,
    assert_landed,
    bool_mixed,
    documents,
    keys,
    landed,
    load,
    values,
    without,
)

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.opencx import OpenCXAPI
from scrapesync.sources.opencx import opencx_source
from scrapesync.sources.opencx.settings import (
    ACTIVE_JOB_FIELDS,
    DATASOURCE_FIELDS,
    JOB_FIELDS,
    PAGE_STATS_FIELDS,
)

DATASOURCE_KEYS = (*DATASOURCE_FIELDS, "page_stats", "active_crawl_job")
# what the connector itself sets on a row (not compared: not from the generated document)
DATASOURCE_SET = (
    *DATASOURCE_FIELDS,
    *(f"active_crawl_job__{name}" for name in ACTIVE_JOB_FIELDS),
    "is_deleted",
    "deleted_at",
)
JOB_SET = (*JOB_FIELDS, "duration_s", "is_terminal", "is_deleted")
ODD = ("Status", "ID", "is_deleted", "page_stats", "Total", "duration_s")
COUNTERS = st.fixed_dictionaries({}, optional=dict.fromkeys(PAGE_STATS_FIELDS, SCALARS))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    options = {"datasources": 2, "jobs_per_datasource": 2, "rate_limit": 10_000}
    box = Sandbox.start_default({"opencx": options})
    yield box
    box.stop()


class Served:
    """The sandbox's datasources and jobs as seeded, and generated fields on top of them."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        api = sandbox.providers["opencx"]
        assert isinstance(api, OpenCXAPI)
        self.api = api
        self.datasources = copy.deepcopy(api.datasources)
        self.jobs = copy.deepcopy(api.jobs)

    def serve(
        self, extras: list[dict[str, Any]], stats: list[dict[str, Any]], jobs: list[dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Datasource i gets `extras[i]` and page stats `stats[i]`, job j gets `jobs[j]`;
        returns what each datasource and job must show beyond the documented fields."""
        expected: dict[str, dict[str, Any]] = {}
        for index, ds_id in enumerate(sorted(self.datasources)):
            extra = without(extras[index] if index < len(extras) else {}, DATASOURCE_KEYS)
            counters = stats[index] if index < len(stats) else {}
            self.api.datasources[ds_id] = {**self.datasources[ds_id], **extra}
            self.api.stats[ds_id] = counters
            expected[ds_id] = {**extra, "page_stats": counters}
        by_job: dict[str, dict[str, Any]] = {}
        every = [(ds_id, job) for ds_id in sorted(self.jobs) for job in self.jobs[ds_id]]
        for ds_id in self.jobs:
            self.api.jobs[ds_id] = []
        for index, (ds_id, job) in enumerate(every):
            extra = without(jobs[index] if index < len(jobs) else {}, JOB_FIELDS)
            self.api.jobs[ds_id].append({**job, **extra})
            by_job[job["id"]] = extra
        return expected, by_job


def sync(sandbox: Sandbox, workdir: Path) -> duckdb.DuckDBPyConnection:
    api = sandbox.providers["opencx"]
    return load(
        opencx_source(**api.source_options(sandbox.url("opencx")), page_size=2), "opencx", workdir
    )


def check(
    served: Served,
    extras: list[dict[str, Any]],
    stats: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    workdir: Path,
) -> None:
    datasources, by_job = served.serve(extras, stats, jobs)
    with sync(served.sandbox, workdir) as db:
        skip = [NAMING.normalize_path(name) for name in DATASOURCE_SET]
        loaded = landed(db, "opencx", "datasources", ("id",), skip)
        assert sorted(loaded) == sorted((ds_id,) for ds_id in datasources)
        for ds_id, expected in datasources.items():
            assert_landed(expected, loaded[(ds_id,)])
        loaded = landed(db, "opencx", "crawl_jobs", ("id",), JOB_SET)
        assert sorted(loaded) == sorted((job_id,) for job_id in by_job)
        for job_id, expected in by_job.items():
            assert_landed(expected, loaded[(job_id,)])


@pytest.fixture
def served(sandbox: Sandbox) -> Served:
    return Served(sandbox)


@SETTINGS
@given(
    extras=documents(ODD, max_count=2),
    stats=st.lists(
        st.builds(
            lambda counters, more: {**more, **counters},
            COUNTERS,
            st.dictionaries(keys(ODD), values(keys(ODD)), max_size=2),
        ),
        max_size=2,
    ),
    jobs=documents(ODD, max_count=8),
)
@example(  # undocumented fields that dlt would merge with, or take from, open.cx's own
    extras=[{"ID": "x", "_dlt_id": "same", "Status": 1}] * 2,
    stats=[{"total": "12", "synced": 1.5, "Total": 3, "pages": {"a": [1]}}, {"total": None}],
    jobs=[{"Status": "x", "_dlt_load_id": "y", "is_terminal": "no"}] * 2,
).via("regression")
@example(  # an object under a name open.cx or scrapesync sets; a list under an empty key
    extras=[{"is_deleted": {"x": 1}, "": [1, 2]}, {"url_": {"a": [True]}}],
    stats=[],
    jobs=[{"duration_s": {"s": 1.5}, "": ["x"]}],
).via("regression")
def test_given_any_drift_when_synced_then_every_value_lands_in_its_column(
    served: Served,
    extras: list[dict[str, Any]],
    stats: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
) -> None:
    datasources = [
        {**extra, "page_stats": counters} for extra, counters in zip(extras, stats, strict=False)
    ]
    assume(not any(bool_mixed(table) for table in (extras, stats, jobs, datasources)))
    with tempfile.TemporaryDirectory() as workdir:
        check(served, extras, stats, jobs, Path(workdir))
