"""The unified view: `scrapesync.scrape_runs`, `sync_runs`, `sync_checks` and `scrapesync status`.

Real sandbox over HTTP, real syncs, real DuckDB: the assertions compare the unified tables with
the provider tables they are built from and with the sandbox's request log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from scrapesync.pipelines import registry
from scrapesync.pipelines.cli import main
from scrapesync.pipelines.report import SyncReport
from scrapesync.pipelines.runner import sync
from scrapesync.pipelines.unified import STATES
from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.server import FaultRule

RUNS = "scrapesync.scrapesync.scrape_runs"  # catalog.dataset.table: the DuckDB file is scrapesync


def query(workdir: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(workdir / "scrapesync.duckdb"), read_only=True) as db:
        return db.sql(sql).fetchall()


def sync_provider(sandbox: Sandbox, name: str) -> SyncReport:
    options = sandbox.providers[name].source_options(sandbox.url(name))
    report = sync(registry.get(name), source_options=options)
    assert report.ok, report.error
    return report


def unified_states(workdir: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    rows = query(workdir, f"SELECT provider, source_table, run_id, state, raw_state FROM {RUNS}")
    return {(p, t, r): (s, raw) for p, t, r, s, raw in rows}


# every provider's run mappings, as their packages declare them
MAPPINGS = [(p.name, m) for p in registry.PROVIDERS.values() for m in p.runs]


def assert_matches_provider_tables(workdir: Path) -> None:
    unified = unified_states(workdir)
    for provider, m in MAPPINGS:
        source = query(
            workdir, f'SELECT CAST({m.key} AS VARCHAR), "{m.state}" FROM {provider}.{m.table}'
        )
        expected = {(provider, m.table, key): (m.states[raw], raw) for key, raw in source}
        mine = {k: v for k, v in unified.items() if k[:2] == (provider, m.table)}
        assert source, f"{provider}.{m.table}: the sandbox gave no runs to map"
        assert mine == expected, f"{provider}.{m.table}"


def test_given_every_provider_synced_twice_then_scrape_runs_mirrors_their_tables(
    make_sandbox: Callable[..., Sandbox], isolated: Path
) -> None:
    sandbox = make_sandbox()
    mapped = {provider for provider, _ in MAPPINGS}
    for name in sorted(mapped):
        sync_provider(sandbox, name)
    assert_matches_provider_tables(isolated)
    first = unified_states(isolated)

    sandbox.advance(2)
    for name in sorted(mapped):
        sync_provider(sandbox, name)
    assert_matches_provider_tables(isolated)
    second = unified_states(isolated)

    finished = {
        key
        for key, (state, _) in first.items()
        if state in ("pending", "running") and second.get(key, ("",))[0] == "succeeded"
    }
    assert finished, "no run went from pending/running to succeeded between the syncs"
    assert {state for state, _ in second.values()} <= set(STATES)
    # finished runs carry their end and duration, open ones none
    open_with_end = query(
        isolated,
        f"SELECT count(*) FROM {RUNS} WHERE state IN ('pending', 'running') "
        "AND (finished_at IS NOT NULL OR duration_s IS NOT NULL)",
    )
    assert open_with_end == [(0,)]
    refs = query(isolated, f"SELECT count(*) FROM {RUNS} WHERE source_ref NOT LIKE 'https://%'")
    assert refs == [(0,)]


def test_given_a_result_file_dropped_silently_then_the_shortfall_is_reported_everywhere(
    make_sandbox: Callable[..., Sandbox], isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = make_sandbox()
    sandbox.faults.add(FaultRule(provider="outscraper", path="^/files/", kind="empty", times=1))

    report = sync_provider(sandbox, "outscraper")

    assert any("incomplete task_results" in w for w in report.warnings), report.warnings
    checks = query(
        isolated,
        "SELECT check_name, expected, loaded, ok FROM scrapesync.scrapesync.sync_checks "
        "WHERE resource = 'task_results'",
    )
    [(name, expected, loaded, ok)] = checks
    assert name == "rows_per_task"
    assert not ok
    assert loaded < expected
    truth = sum(rows for rows in sandbox.providers["outscraper"].truth()["task_rows"].values())
    assert expected == truth
    # nothing was deleted because of it: every task row is still there
    assert query(isolated, "SELECT count(*) FROM outscraper.tasks")[0][0] == len(
        sandbox.providers["outscraper"].truth()["tasks"]
    )

    assert main(["status", "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    [provider] = status["providers"]
    assert provider["provider"] == "outscraper"
    assert [c["ok"] for c in provider["checks"] if c["resource"] == "task_results"] == [False]
    assert any("incomplete task_results" in p for p in provider["problems"])


def test_sync_runs_figures_match_the_sandbox_request_log(
    make_sandbox: Callable[..., Sandbox], isolated: Path
) -> None:
    sandbox = make_sandbox()
    sandbox.faults.add(FaultRule(provider="scrapewise", path="load-history", status=503))
    sandbox.faults.add(
        FaultRule(
            provider="scrapewise",
            path="load-history",
            status=429,
            headers={"Retry-After": "0"},
            skip=1,
        )
    )

    report = sync_provider(sandbox, "scrapewise")

    log = sandbox.requests.entries("scrapewise")
    [row] = query(
        isolated,
        "SELECT requests, retries, throttled, bytes, outcome, rows_inserted "
        "FROM scrapesync.scrapesync.sync_runs WHERE resource = '*'",
    )
    assert row[:4] == (
        len(log),
        sum(1 for e in log if e.status == 429 or e.status >= 500),
        sum(1 for e in log if e.status == 429),
        sum(e.bytes for e in log),
    )
    assert row[1:3] == (2, 1)
    assert row[3] > 0
    assert row[4] == "ok"
    assert row[5] == sum(t.inserted for t in report.tables)
    per_table = dict(
        query(
            isolated,
            "SELECT resource, rows_total FROM scrapesync.scrapesync.sync_runs "
            "WHERE resource <> '*'",
        )
    )
    assert per_table == {t.table: t.total for t in report.tables}


def test_status_exit_codes_follow_failures_and_staleness(
    make_sandbox: Callable[..., Sandbox], isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 2  # nothing recorded yet
    sandbox = make_sandbox()
    sync_provider(sandbox, "opencx")
    capsys.readouterr()

    assert main(["status", "--json"]) == 0
    healthy = json.loads(capsys.readouterr().out)
    assert healthy["healthy"] is True
    resources = {r["resource"] for r in healthy["providers"][0]["resources"]}
    assert resources == {"*", "datasources", "crawl_jobs"}
    assert main(["status", "--max-age-hours", "0"]) == 1
    assert "stale" in capsys.readouterr().out

    sandbox.faults.add(FaultRule(provider="opencx", path="", status=401, times=None))
    options = sandbox.providers["opencx"].source_options(sandbox.url("opencx"))
    assert not sync(registry.get("opencx"), source_options=options).ok
    assert main(["status", "--json"]) == 1
    failed = json.loads(capsys.readouterr().out)["providers"][0]
    assert any(p.startswith("last sync failed") for p in failed["problems"])
    assert failed["resources"][0]["last_success_at"] is not None  # the earlier good sync
