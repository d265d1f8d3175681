"""Shared fixtures: a real sandbox server per test, an isolated dlt + DuckDB working dir."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from httpmock import HttpMocker
from hypothesis import settings
from pgtest import fresh_database

from scrapesync.pipelines import registry
from scrapesync.pipelines.report import SyncReport
from scrapesync.pipelines.runner import sync
from scrapesync.sandbox import Sandbox
from scrapesync.sources.common.redact import forget_secrets

# property tests are reproducible: the same examples on every run and machine, and no example
# database (a failure saved by an earlier, different generator must not replay on CI)
settings.register_profile("scrapesync", database=None, derandomize=True)
settings.load_profile("scrapesync")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test in its own directory: its DuckDB file, dlt data dir and no stray config."""
    for name in list(os.environ):
        if name.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__", "LOAD__", "NORMALIZE__")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    # fast retries: the behaviour under test is that they happen, not how long they wait
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "4")
    # no telemetry: the tests talk to 127.0.0.1 only
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    # the redaction registry is process-wide: a key one test used must not mask another's text
    forget_secrets()
    # a source iterated outside a pipeline reads the active pipeline's state: one an earlier
    # test in this worker left active lent its open Scrapewise runs to a fast test
    Container()[PipelineContext].deactivate()
    return tmp_path


@pytest.fixture(autouse=True)
def dlt_logs_in_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """dlt's logger does not propagate to the root logger once dlt initialised it, so which
    test first created a pipeline in a worker decided whether `caplog` saw dlt's lines; its
    handler is attached to the `dlt` logger directly, the same in every test."""
    dlt_logger = logging.getLogger("dlt")
    propagate = dlt_logger.propagate
    dlt_logger.propagate = False
    dlt_logger.addHandler(caplog.handler)
    yield
    dlt_logger.removeHandler(caplog.handler)
    dlt_logger.propagate = propagate


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start a sandbox with per-provider options; stopped after the test."""
    started: list[Sandbox] = []

    def start(**options: dict[str, Any]) -> Sandbox:
        sandbox = Sandbox.start_default(options)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


class Harness:
    """Runs real syncs of one provider against a sandbox into ./scrapesync.duckdb."""

    def __init__(self, sandbox: Sandbox, provider: str, workdir: Path) -> None:
        self.sandbox = sandbox
        self.provider = provider
        self.api = sandbox.providers[provider]
        self.workdir = workdir

    @property
    def db_path(self) -> Path:
        return self.workdir / "scrapesync.duckdb"

    def options(self, **overrides: Any) -> dict[str, Any]:
        return {**self.api.source_options(self.sandbox.url(self.provider)), **overrides}

    def sync(self, expect_ok: bool = True, **overrides: Any) -> SyncReport:
        report = self.sync_with(self.options(**overrides))
        if expect_ok:
            assert report.ok, report.error
        return report

    def sync_with(self, options: dict[str, Any], **kwargs: Any) -> SyncReport:
        return sync(registry.get(self.provider), source_options=options, **kwargs)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db_path), read_only=True) as db:
            return db.sql(sql).fetchall()

    def scalar(self, sql: str) -> Any:
        return self.query(sql)[0][0]

    def requests(self, path: str | None = None) -> list[Any]:
        return self.sandbox.requests.entries(self.provider, path)


@pytest.fixture
def harness(make_sandbox: Callable[..., Sandbox], isolated: Path) -> Callable[..., Harness]:
    def build(provider: str, **options: Any) -> Harness:
        return Harness(make_sandbox(**{provider: options}), provider, isolated)

    return build


@pytest.fixture
def http() -> Iterator[HttpMocker]:
    """The fast layer's strict in-process HTTP (tests/httpmock.py) at `http.base_url`; an
    expected request that was never sent fails the test."""
    with HttpMocker() as mocker:
        yield mocker


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh PostgreSQL database as the destination, configured the dlt way
    (DESTINATION__POSTGRES__CREDENTIALS); skips without a server unless
    SCRAPESYNC_REQUIRE_POSTGRES=1 (CI) makes that a failure."""
    with fresh_database(monkeypatch):
        yield
