"""Outscraper with many async requests: concurrent collection, destination equal to the
truth, state that forgets finished requests (real sandbox, real dlt, real DuckDB file)."""

from __future__ import annotations

from typing import Any

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox.truth import mismatches

REQUESTS = 1000


def request_state() -> dict[str, Any]:
    resources = pipeline_for("outscraper").state["sources"]["outscraper"]["resources"]
    state: dict[str, Any] = resources["request_results"]["requests"]
    return state


def assert_truth(h: Any) -> None:
    problems = mismatches(pipeline_for("outscraper"), "outscraper", h.api)
    assert problems == [], "\n".join(problems)


def reads(h: Any) -> set[str]:
    return {r.path.rsplit("/", 1)[-1] for r in h.requests() if r.path.count("/requests/") == 1}


def finished(h: Any) -> set[str]:
    return {r.id for r in h.api.requests.values() if r.finished_at is not None}


def test_given_many_requests_when_synced_across_their_expiry_then_each_is_collected_once(
    harness: Any,
) -> None:
    h = harness("outscraper", tasks=1, rows_per_task=3, requests=REQUESTS)
    configured = sorted(h.api.requests)[: REQUESTS // 2]  # half configured, all listed
    h.sync(request_ids=configured, concurrency=8)
    assert_truth(h)
    collected = finished(h)
    assert reads(h) == collected | set(configured)
    # twice 3 h: past the 4 h retention, every request of the first sync reads `Pending`
    # again and is still listed as finished; only the destination remembers it was collected
    for _ in range(2):
        h.sandbox.advance(3)
        h.sandbox.requests.clear()
        h.sync(request_ids=configured, concurrency=8)

        assert_truth(h)
        assert reads(h) <= (finished(h) | set(configured)) - collected
        collected |= reads(h)
        assert len(request_state()) <= 10  # the earlier syncs' requests are forgotten
    statuses = dict(h.query("SELECT status, count(*) FROM outscraper.requests GROUP BY 1"))
    assert statuses.get("Expired", 0) == 0

    h.sandbox.requests.clear()
    h.sync(request_ids=configured, concurrency=8)  # nothing changed

    assert_truth(h)
    assert reads(h) == set(configured) - finished(h)  # only what is still pending
    assert len(request_state()) <= 1
