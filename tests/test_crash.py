"""Crash consistency: a sync killed with SIGKILL anywhere leaves nothing a clean sync can't fix.

Each test loads once, lets the provider change, runs `scrapesync sync <provider>` in a child
process and SIGKILLs it at one observed point (inside extract, between extract and normalize,
inside the load with some tables already merged, after the load) or, from inside, right after
the destination committed a load job of one table; lets the provider change again, and runs
one clean sync. The destination must then equal the sandbox's truth: nothing lost, no primary
key twice, deletes applied, and the changes made after the kill read too (dlt alone would
only finish the interrupted package: docs/dlt-behaviours.md, "Load packages and recovery").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scrapesync.pipelines import registry
from scrapesync.pipelines.report import SyncReport
from scrapesync.pipelines.runner import pipeline_for, sync
from scrapesync.sandbox.crash import killed_sync
from scrapesync.sandbox.truth import mismatches

SANDBOX = {
    "reworkd": {"groups": ["g-a", "g-b", "g-c"], "records_per_group": 500},
    "scrapewise": {"runs_per_scraper": 6},
    "opencx": {"rate_limit": 1000},
    # every step also restarts a finished task and terminates one (updates and deletes)
    "outscraper": {"tasks": 20, "churn_every": 1},
}
# steps of change before each sync: a task restarted by Outscraper's churn finishes one step
# later, so with two the killed sync (and the recovery sync) load a restart's new rows
STEPS = {"outscraper": 2}
# page sizes small enough that extract spans several requests
CHILD_OPTIONS = {
    "reworkd": {"page_size": 100},
    "scrapewise": {"page_size": 5},
    "opencx": {},
    "outscraper": {"page_size": 4},
}
CASES = [
    ("reworkd", "extract"),
    ("reworkd", "normalize"),
    ("reworkd", "load"),
    ("reworkd", "after_load"),
    ("scrapewise", "load"),
    ("opencx", "load"),
    ("outscraper", "extract"),
    ("outscraper", "normalize"),
    ("outscraper", "load"),
    ("outscraper", "after_load"),
    # result rows skip dlt's staging dedup: a replayed copy job must still not duplicate them
    ("outscraper", "committed:task_results"),
    ("outscraper", "committed:request_results"),
]


def in_process_sync(sandbox: Any, provider: str) -> SyncReport:
    api = sandbox.providers[provider]
    options = {**api.source_options(sandbox.url(provider)), **CHILD_OPTIONS[provider]}
    report = sync(registry.get(provider), source_options=options)
    assert report.ok, report.error
    return report


def assert_destination_equals_truth(sandbox: Any, provider: str) -> None:
    problems = mismatches(pipeline_for(provider), provider, sandbox.providers[provider])
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(("provider", "point"), CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_given_a_sync_killed_at_a_point_when_synced_again_then_destination_equals_provider(
    make_sandbox: Any, isolated: Path, provider: str, point: str
) -> None:
    sandbox = make_sandbox(**{provider: SANDBOX[provider]})
    in_process_sync(sandbox, provider)

    # a fast step can end before the watcher sees it: try a few changed syncs until one lands
    for _ in range(3):
        sandbox.advance(STEPS.get(provider, 1))
        if killed_sync(sandbox, provider, isolated, point, CHILD_OPTIONS[provider]):
            break
    else:
        pytest.fail(f"the kill at {point} never landed inside a sync")
    pending = pipeline_for(provider).has_pending_data
    # changes made while nothing ran must arrive with the recovery sync
    sandbox.advance(STEPS.get(provider, 1))

    report = in_process_sync(sandbox, provider)

    assert report.recovered_packages == (1 if pending else 0)
    if point in ("normalize", "load") or point.startswith("committed:"):
        assert pending, f"a kill at {point} must leave the package for the next sync"
    assert not pipeline_for(provider).has_pending_data
    assert_destination_equals_truth(sandbox, provider)
