"""The dbt models (`transform/`, `scrapesync transform`) on real syncs from the sandbox.

Every provider is synced twice while the sandbox changes, the models are built in-process with
dbt-core (DuckDB, and PostgreSQL when a server runs), and each model's rows are compared with
the tables it is built from. A broken input must fail a dbt test and the command's exit code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_destinations import configure

from scrapesync.pipelines import registry
from scrapesync.pipelines.cli import main as cli
from scrapesync.pipelines.runner import sync
from scrapesync.pipelines.transform import build_models
from scrapesync.sandbox import Sandbox

pytest.importorskip("dbt.cli.main", reason="dbt is not installed (pip install -e '.[dbt]')")

MODELS = "scrapesync.scrapesync_models"  # catalog.dataset: the DuckDB file is scrapesync.duckdb
RUNS = "scrapesync.scrapesync.scrape_runs"
HEALTH_COLUMNS = [
    "provider",
    "parent_id",
    "day",
    "runs",
    "succeeded",
    "failed",
    "success_rate",
    "items_ok",
    "items_failed",
    "duration_p50_s",
    "duration_p95_s",
    "data_lag_s",
]
SMALL = {"reworkd": {"records_per_group": 30}, "oxylabs": {"fault_every": 2}}


def query(workdir: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(workdir / "scrapesync.duckdb"), read_only=True) as db:
        return db.sql(sql).fetchall()


def scalar(workdir: Path, sql: str) -> Any:
    return query(workdir, sql)[0][0]


def sync_all(sandbox: Sandbox, names: list[str], **options: Any) -> None:
    for name in names:
        source_options = {**sandbox.providers[name].source_options(sandbox.url(name)), **options}
        report = sync(registry.get(name), source_options=source_options)
        assert report.ok, report.error


def test_given_every_provider_synced_twice_when_transformed_then_models_match_their_inputs(
    make_sandbox: Callable[..., Sandbox], isolated: Path
) -> None:
    sandbox = make_sandbox(**SMALL)
    names = sorted(registry.PROVIDERS)
    sync_all(sandbox, names)
    first = build_models()
    assert first.ok, first.failures
    sandbox.advance(2)
    sync_all(sandbox, names)  # the same process writes the file dbt just built in

    result = build_models()

    assert result.ok, result.failures
    assert "17 models (17 success)" in "\n".join(result.summary)
    columns = query(
        isolated,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        "'scrapesync_models' AND table_name = 'scrape_health' ORDER BY ordinal_position",
    )
    assert [c for (c,) in columns] == HEALTH_COLUMNS
    health = dict(
        query(isolated, f"SELECT provider, sum(runs) FROM {MODELS}.scrape_health GROUP BY 1")
    )
    runs = dict(query(isolated, f"SELECT provider, count(*) FROM {RUNS} GROUP BY 1"))
    assert health == runs
    assert runs
    succeeded = scalar(isolated, f"SELECT count(*) FROM {RUNS} WHERE state = 'succeeded'")
    assert scalar(isolated, f"SELECT sum(succeeded) FROM {MODELS}.scrape_health") == succeeded
    assert scalar(isolated, f"SELECT max(success_rate) FROM {MODELS}.scrape_health") <= 1.0

    failed = dict(
        query(isolated, f"SELECT provider, sum(failures) FROM {MODELS}.failed_links GROUP BY 1")
    )
    assert failed["scrapewise"] == scalar(isolated, "SELECT count(*) FROM scrapewise.job_errors")
    faulted = scalar(isolated, "SELECT count(*) FROM oxylabs.jobs WHERE status = 'faulted'")
    assert faulted > 0
    assert failed["oxylabs"] == faulted

    crawls = scalar(isolated, "SELECT count(*) FROM opencx.crawl_jobs")
    assert scalar(isolated, f"SELECT count(*) FROM {MODELS}.crawl_coverage") == crawls
    latest = scalar(isolated, f"SELECT count(*) FROM {MODELS}.crawl_coverage WHERE is_latest")
    assert latest == scalar(isolated, "SELECT count(DISTINCT datasource_id) FROM opencx.crawl_jobs")

    # no history mode: the latest version of each live record, never closed
    live = scalar(isolated, "SELECT count(*) FROM reworkd.outputs")
    versions = query(
        isolated,
        f"SELECT count(*), count(valid_to), min(derived_from) FROM {MODELS}.product_history",
    )
    assert versions == [(live, 0, "latest")]
    jobs = scalar(isolated, "SELECT count(*) FROM scrapewise.jobs")
    assert scalar(isolated, f"SELECT count(*) FROM {MODELS}.stg_scrapewise__jobs") == jobs


def test_given_history_mode_and_only_one_provider_when_transformed_then_versions_close(
    make_sandbox: Callable[..., Sandbox], isolated: Path
) -> None:
    sandbox = make_sandbox(**SMALL)
    sync_all(sandbox, ["reworkd"], history=True)
    sandbox.advance()
    sync_all(sandbox, ["reworkd"], history=True)

    result = build_models()

    # the other providers were never synced: their models are off, nothing fails
    assert result.ok, result.failures
    assert "not synced (their models are off)" in result.summary[0]
    models = {
        name
        for (name,) in query(
            isolated,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'scrapesync_models'",
        )
    }
    assert {"product_history", "stg_reworkd__output_versions", "stg_scrapesync__sync_runs"} <= (
        models
    )
    # Reworkd maps no runs into scrape_runs, so there is no scrape_health either
    assert not models & {"crawl_coverage", "failed_links", "scrape_health"}
    history = f"{MODELS}.product_history"
    assert scalar(isolated, f"SELECT min(derived_from) FROM {history}") == "history"
    closed = scalar(isolated, f"SELECT count(*) FROM {history} WHERE valid_to IS NOT NULL")
    assert closed > 0, "an update must close the record's earlier version"
    assert scalar(isolated, f"SELECT count(*) FROM {history}") == scalar(
        isolated, "SELECT count(*) FROM reworkd.outputs_history"
    )
    current = scalar(isolated, f"SELECT count(*) FROM {history} WHERE is_current")
    assert current == scalar(isolated, "SELECT count(*) FROM reworkd.outputs")


def test_given_a_broken_input_when_transform_runs_then_a_dbt_test_fails_the_exit_code(
    make_sandbox: Callable[..., Sandbox], isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = make_sandbox(**SMALL)
    sync_all(sandbox, ["scrapewise"])
    assert cli(["transform", "--select", "stg_scrapewise__jobs"]) == 0
    # a second row for one run: the staging model's `unique` test must catch it
    with duckdb.connect(str(isolated / "scrapesync.duckdb")) as db:
        db.execute("INSERT INTO scrapewise.jobs SELECT * FROM scrapewise.jobs LIMIT 1")
    capsys.readouterr()

    code = cli(["transform", "--select", "stg_scrapewise__jobs"])

    out = capsys.readouterr().out
    assert code == 1
    assert "unique_stg_scrapewise__jobs_run_id: fail" in out


def test_given_postgres_when_synced_with_transform_then_models_build_and_tests_pass(
    make_sandbox: Callable[..., Sandbox],
    monkeypatch: pytest.MonkeyPatch,
    postgres: None,
) -> None:
    import psycopg2

    sandbox = make_sandbox(**SMALL)
    names = ["opencx", "reworkd", "scrapewise"]
    for name in names:
        configure(monkeypatch, sandbox, name)

    assert cli(["sync", *names, "--destination", "postgres", "-q", "--transform"]) == 0

    with psycopg2.connect(os.environ["DESTINATION__POSTGRES__CREDENTIALS"]) as db:
        cursor = db.cursor()
        cursor.execute("SELECT sum(runs) FROM scrapesync_models.scrape_health")
        health = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM scrapesync.scrape_runs")
        runs = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM scrapesync_models.crawl_coverage")
        coverage = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM opencx.crawl_jobs")
        crawls = cursor.fetchone()
    assert health is not None
    assert runs is not None
    assert health[0] == runs[0] > 0
    assert coverage == crawls
