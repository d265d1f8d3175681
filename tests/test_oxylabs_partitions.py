"""Oxylabs with many jobs: bounded concurrent collection, every job collected once, and dlt
state that does not grow with collected jobs (the ledger is in the destination)."""

from __future__ import annotations

from typing import Any

import orjson

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox.truth import mismatches
from scrapesync.sources.oxylabs import connect

JOBS = 500


def state_size() -> int:
    return len(orjson.dumps(pipeline_for("oxylabs").state))


def submit(h: Any, count: int, tag: str) -> None:
    options = {k: v for k, v in h.options().items() if k != "journal_path"}  # ledger in the DB
    values = [f"{tag} {n}" for n in range(count)]
    connect(**options).submitter.submit(values, "query", {"source": "universal"})


def test_given_many_jobs_when_collected_in_two_syncs_then_each_once_and_state_flat(
    harness: Any, tmp_path: Any
) -> None:
    h = harness("oxylabs", schedules=0, html_bytes=200, workdir=str(tmp_path / "sandbox"))
    options = {"scheduler": False, "concurrency": 16, "requests_per_second": 10_000.0}

    def sync() -> Any:
        return h.sync_with({**h.options(**options), "journal_path": None})

    submit(h, JOBS, "first")
    h.api.advance()
    assert sync().ok
    size = state_size()

    submit(h, JOBS, "second")
    h.api.advance()
    h.sandbox.requests.clear()
    assert sync().ok

    assert mismatches(pipeline_for("oxylabs"), "oxylabs", h.api) == []
    assert dict(h.query("SELECT status, count(*) FROM oxylabs.jobs GROUP BY 1")) == {
        "done": 2 * JOBS
    }
    assert len(h.requests(r"/results$")) == JOBS  # the first batch is never fetched again
    assert state_size() <= size + 64  # the ledger, not dlt's state, knows every job
