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
