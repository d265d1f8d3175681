"""open.cx with many datasources: concurrent reads, destination equal to the truth, bounded
state (real sandbox over HTTP, real dlt pipelines, real DuckDB file)."""

from __future__ import annotations

from typing import Any

import orjson

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox.truth import mismatches

DATASOURCES = 600


def state_size(provider: str) -> int:
    return len(orjson.dumps(pipeline_for(provider).state))


def assert_truth(h: Any) -> None:
    problems = mismatches(pipeline_for("opencx"), "opencx", h.api)
    assert problems == [], "\n".join(problems)


def test_given_many_datasources_when_synced_twice_with_changes_then_tables_equal_truth(
    harness: Any,
) -> None:
    h = harness(
        "opencx",
        datasources=DATASOURCES,
        jobs_per_datasource=1,
        rate_limit=10**6,
        list_page_size=100,
    )
    h.sync(page_size=100, concurrency=8)
    assert_truth(h)
    first_state = state_size("opencx")

    gone = sorted(h.api.datasources)[:5]
    for ds_id in gone:  # before anything new happens to them: every job of theirs is loaded
        h.api.delete_datasource(ds_id)
    h.sandbox.advance(2)  # jobs end, recrawls start, new datasources appear
    h.sandbox.requests.clear()
    h.sync(page_size=100, concurrency=8)

    assert_truth(h)
    deleted = {row[0] for row in h.query("SELECT id FROM opencx.datasources WHERE is_deleted")}
    assert deleted == set(gone)
    # a datasource costs its detail read and its history read (plus re-reads of open jobs)
    live = len(h.api.datasources)
    history = [r for r in h.requests() if r.path.endswith("/crawls")]
    assert len(history) == live
    # state holds one small entry per live datasource, whatever happened in between
    assert state_size("opencx") < first_state * 1.2


def test_given_configured_datasources_when_synced_then_each_is_read_once_concurrently(
    harness: Any,
) -> None:
    h = harness("opencx", datasources=200, jobs_per_datasource=1, rate_limit=10**6)
    ids = sorted(h.api.datasources)
    h.sync(datasource_ids=ids, concurrency=16)
    h.sandbox.advance()
    h.sandbox.requests.clear()
    h.sync(datasource_ids=ids, concurrency=16)

    details = [r for r in h.requests() if r.path.rstrip("/").endswith(tuple(ids))]
    assert len(details) == len(ids)
    synced = h.scalar("SELECT count(*) FROM opencx.datasources WHERE NOT is_deleted")
    assert synced == len(ids)
