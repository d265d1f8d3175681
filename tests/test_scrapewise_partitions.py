"""Scrapewise with many configured groups: concurrent history reads, destination equal to the
truth, per-run state that does not grow sync after sync (real sandbox, dlt, DuckDB file)."""

from __future__ import annotations

from typing import Any

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox.truth import mismatches

GROUPS = 150


def done_entries() -> int:
    resources = pipeline_for("scrapewise").state["sources"]["scrapewise"]["resources"]
    return len(resources["rows"]["done"]) + len(resources["job_errors"]["done"])


def assert_truth(h: Any) -> None:
    problems = mismatches(pipeline_for("scrapewise"), "scrapewise", h.api)
    assert problems == [], "\n".join(problems)


def test_given_many_groups_when_synced_repeatedly_then_truth_and_state_stays_bounded(
    harness: Any,
) -> None:
    h = harness(
        "scrapewise", groups=GROUPS, scrapers_per_group=1, runs_per_scraper=1, rate_limit=None
    )
    groups = sorted(h.api.data.groups)
    h.sync(group_ids=groups, concurrency=16, page_size=1000)
    assert_truth(h)

    sizes = []
    for _ in range(3):  # every step ends and starts one run per scraper
        h.sandbox.advance()
        h.sync(group_ids=groups, concurrency=16, page_size=1000)
        assert_truth(h)
        sizes.append(done_entries())
    # the runs read are forgotten once every scope's read stops above them: at most the
    # newest run per scope and resource, where keeping all would be one more per sync
    assert max(sizes) <= 2 * GROUPS, sizes

    h.sandbox.requests.clear()
    h.sync(group_ids=groups, concurrency=16, page_size=1000)  # nothing changed
    history = [r for r in h.requests() if r.path.endswith("load-history")]
    assert len(history) == GROUPS  # one page per group, nothing read twice
    data = [r for r in h.requests() if "/data/" in r.path or "errors" in r.path]
    assert data == []
