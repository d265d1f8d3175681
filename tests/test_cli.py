"""The `scrapesync` command as users and schedulers run it: a separate process, env config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb

SCRAPESYNC = str(Path(sys.executable).parent / "scrapesync")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 240) -> Any:
    return subprocess.run(
        [SCRAPESYNC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_demo_runs_end_to_end(isolated: Path) -> None:
    result = run_cli("demo")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "first sync (full load)" in result.stdout
    assert "second sync (incremental)" in result.stdout
    assert "check: reworkd.outputs has 4040 rows, the sandbox 4040: equal" in result.stdout
    assert "DIFFERENT" not in result.stdout
    assert (isolated / "scrapesync_demo.duckdb").exists()


def test_sync_reads_env_config_and_writes_the_documented_places(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(reworkd={"groups": ["g1", "g2"], "records_per_group": 50})
    api = sandbox.providers["reworkd"]
    env = {
        "SOURCES__REWORKD__API_KEY": sorted(api.api_keys)[0],
        "SOURCES__REWORKD__BASE_URL": sandbox.url("reworkd"),
        "SOURCES__REWORKD__GROUP_IDS": json.dumps(["g1", "g2"]),
        "SOURCES__REWORKD__PAGE_SIZE": "20",
    }

    result = run_cli("sync", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "reworkd: ok" in result.stdout
    assert "outputs" in result.stdout
    assert (isolated / "dlt" / "pipelines" / "scrapesync_reworkd").is_dir()
    with duckdb.connect(str(isolated / "scrapesync.duckdb"), read_only=True) as db:
        assert db.sql("SELECT count(*) FROM reworkd.outputs").fetchone() == (100,)
    pages = [r for r in sandbox.requests.entries("reworkd") if r.query.get("limit") == ["20"]]
    assert pages, "SOURCES__REWORKD__PAGE_SIZE was not applied"


def test_failed_sync_exits_non_zero_without_leaking_the_key(make_sandbox: Any) -> None:
    sandbox = make_sandbox(reworkd={"groups": ["g1"], "records_per_group": 5})
    secret = "rwk_live_very_secret_token_123"
    env = {
        "SOURCES__REWORKD__API_KEY": secret,
        "SOURCES__REWORKD__BASE_URL": sandbox.url("reworkd"),
        "SOURCES__REWORKD__GROUP_IDS": '["g1"]',
    }

    result = run_cli("-v", "sync", "reworkd", env=env)

    assert result.returncode == 1
    assert "401" in result.stdout
    assert "SOURCES__REWORKD__API_KEY" in result.stdout
    assert secret not in result.stdout + result.stderr


def test_nothing_configured_is_a_usage_error() -> None:
    result = run_cli("sync")

    assert result.returncode == 2
    assert "no provider is configured" in result.stderr
    assert run_cli("sync", "nosuchprovider").returncode == 2


def reworkd_env(sandbox: Any, **extra: str) -> dict[str, str]:
    api = sandbox.providers["reworkd"]
    return {
        "SOURCES__REWORKD__API_KEY": sorted(api.api_keys)[0],
        "SOURCES__REWORKD__BASE_URL": sandbox.url("reworkd"),
        "SOURCES__REWORKD__GROUP_IDS": json.dumps(list(api.groups)),
        **extra,
    }


def start_cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SCRAPESYNC, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_given_shards_when_their_syncs_run_at_once_into_one_postgres_dataset_then_it_equals_the_truth_and_resharding_loses_nothing(  # noqa: E501
    make_sandbox: Any, postgres: None
) -> None:
    from scrapesync.pipelines.runner import pipeline_for
    from scrapesync.sandbox.server import FaultRule
    from scrapesync.sandbox.truth import mismatches
    from scrapesync.sources.common.partitions import Shard, owned

    sandbox = make_sandbox(reworkd={"groups": 30, "records_per_group": 20})
    api = sandbox.providers["reworkd"]
    env = reworkd_env(sandbox)
    for count in (2, 3):  # a first load in two shards, then three: every group may move
        # each shard's first request is held: the shards extract, then load, at the same time
        for index in range(count):
            first = owned(list(api.groups), Shard(index, count))[0]
            sandbox.faults.add(FaultRule("reworkd", f"/v1/outputs/{first}$", "delay", delay=2.0))
        children = [
            start_cli(
                "sync", "reworkd", "--destination", "postgres", "--shard", f"{i}/{count}", env=env
            )
            for i in range(count)
        ]
        outcomes = [(child.wait(timeout=240), *child.communicate()) for child in children]
        for code, out, err in outcomes:
            assert code == 0, out + err
            assert "reworkd: ok" in out
        pipeline = pipeline_for("reworkd", "postgres")
        pipeline.sync_destination()
        assert mismatches(pipeline, "reworkd", api) == [], count
        sandbox.advance()


def test_given_a_held_shard_lease_when_shards_sync_then_only_the_same_shard_waits(
    make_sandbox: Any, monkeypatch: Any, capsys: Any
) -> None:
    from scrapesync.pipelines.cli import main
    from scrapesync.pipelines.lease import EXIT_LEASE_HELD
    from scrapesync.pipelines.runner import run_lease
    from scrapesync.sources.common.partitions import Shard

    sandbox = make_sandbox(reworkd={"groups": 4, "records_per_group": 5})
    for name, value in reworkd_env(sandbox, SCRAPESYNC__LEASE_WAIT_SECONDS="0").items():
        monkeypatch.setenv(name, value)

    with run_lease("reworkd", "duckdb", shard=Shard(0, 2)):
        other = main(["sync", "reworkd", "--shard", "1/2", "-q"])
        same = main(["sync", "reworkd", "--shard", "0/2", "-q"])

    err = capsys.readouterr().err
    assert other == 0, err
    assert same == EXIT_LEASE_HELD
    assert "reworkd[0/2]: not run, another run holds its lease" in err


def test_shard_usage_errors_name_the_fix(monkeypatch: Any, capsys: Any) -> None:
    from scrapesync.pipelines.cli import main

    assert main(["sync", "reworkd", "scrapewise", "--shard", "0/2"]) == 2
    assert "--shard needs exactly one provider" in capsys.readouterr().err

    monkeypatch.setenv("SOURCES__SCRAPEWISE__API_KEY", "k")
    monkeypatch.setenv("SOURCES__REWORKD__GROUP_IDS", '["g1"]')
    assert main(["sync", "scrapewise", "--shard", "0/2", "-q"]) == 1
    assert "scrapewise: cannot be synced in shards" in capsys.readouterr().out
    assert main(["sync", "reworkd", "--shard", "1/2", "--full-refresh", "-q"]) == 1
    assert "--full-refresh drops the tables of every shard" in capsys.readouterr().out
    assert main(["sync", "reworkd", "--shard", "2/2", "-q"]) == 1
    assert "is not a shard" in capsys.readouterr().out
