"""open.cx pacing end to end (the client keeps under the rate limit on its own); pure helpers.

The limiter itself (sources/common/pacing.py) is tested in tests/fast/test_common_pacing.py.
"""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from test_opencx import assert_equals_truth

from scrapesync.sources.opencx.transform import HistoryWalk, duration_seconds

LIMIT, WINDOW = 10, 1.0  # the sandbox's limiter, scaled down from 100 per 60 s


def busiest_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(
        sum(1 for other in times[index:] if other < start + window)
        for index, start in enumerate(times)
    )


@pytest.fixture
def many(harness: Any) -> Any:
    return harness(
        "opencx", datasources=20, jobs_per_datasource=2, rate_limit=LIMIT, rate_window=WINDOW
    )


def test_given_many_datasources_when_synced_then_pacing_avoids_every_429(many: Any) -> None:
    report = many.sync()  # source_options: 600 requests/min held in every 1 s window

    served = many.requests()
    assert len(served) > 3 * LIMIT, "the sync must need several windows for this to prove much"
    assert [r.status for r in served if r.status == 429] == []
    assert report.stats.throttled == 0
    assert busiest_window([r.at for r in served], WINDOW) <= LIMIT
    assert_equals_truth(many)


def test_given_pacing_off_then_the_same_sync_is_throttled_but_still_correct(many: Any) -> None:
    """The control: without pacing this sandbox does answer 429 (so the test above can fail)."""
    report = many.sync(requests_per_minute=100_000)

    assert any(r.status == 429 for r in many.requests())
    assert report.stats.throttled >= 1
    assert_equals_truth(many)  # Retry-After was honoured by the shared retry layer


def at(minute: int) -> str:
    return f"2025-03-01T00:{minute:02d}:00Z"


def test_history_walk_stops_only_past_the_cutoff_in_proven_newest_first_order() -> None:
    cutoff = pendulum.parse(at(30))
    walk = HistoryWalk(cutoff)  # type: ignore[arg-type]
    assert not walk.exhausted_after([{"created_at": at(50)}, {"created_at": at(40)}])
    assert walk.exhausted_after([{"created_at": at(35)}, {"created_at": at(20)}])

    ascending = HistoryWalk(cutoff)  # type: ignore[arg-type]
    assert not ascending.exhausted_after([{"created_at": at(10)}, {"created_at": at(20)}])
    # once the order is disproved it never stops early, even on a page that looks sorted
    assert not ascending.exhausted_after([{"created_at": at(5)}, {"created_at": at(1)}])

    across_pages = HistoryWalk(cutoff)  # type: ignore[arg-type]
    assert not across_pages.exhausted_after([{"created_at": at(10)}])
    assert not across_pages.exhausted_after([{"created_at": at(45)}, {"created_at": at(1)}])

    one_by_one = HistoryWalk(cutoff)  # type: ignore[arg-type]
    assert not one_by_one.exhausted_after([{"created_at": at(10)}])  # one job proves nothing
    assert one_by_one.exhausted_after([{"created_at": at(5)}])

    ties = HistoryWalk(cutoff)  # type: ignore[arg-type]
    assert not ties.exhausted_after([{"created_at": at(10)}, {"created_at": at(10)}])

    assert not HistoryWalk(None).exhausted_after([{"created_at": at(1)}])


def test_duration_only_for_ended_jobs() -> None:
    assert duration_seconds(at(0), at(30)) == 1800.0
    assert duration_seconds(at(0), None) is None
    assert duration_seconds(None, None) is None
