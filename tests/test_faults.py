"""Faults and bad answers on every provider's main list endpoint, and secrets that never leak.

One table of faults runs against each provider in turn (one test per provider, the faults in
sequence so every sync builds on the last). Between faults the sandbox's data changes. Each
sync must either succeed with data equal to the sandbox's truth, or fail with an error that
names the provider, leaving the loaded data and the pipeline state exactly as they were; the
next good sync then catches up. Afterwards the configured credentials (and a wrong one tried
on the way) must appear nowhere: not in logs, output, errors, dlt's working directory (state,
schemas, load packages) or any destination table.
"""

from __future__ import annotations

import base64
import gzip
import logging
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from dlt.common.pipeline import TPipelineState

from scrapesync.pipelines import registry
from scrapesync.pipelines.report import SyncReport
from scrapesync.pipelines.runner import pipeline_for, sync
from scrapesync.sandbox import FaultRule
from scrapesync.sandbox.truth import mismatches, read_rows
from scrapesync.sources.common.provider import merge_tables

MAIN_LIST = {
    "reworkd": r"^/v1/outputs/",
    "scrapewise": r"^/api/scraper/load-history$",
    "opencx": r"^/crawl$",
    "outscraper": r"^/tasks$",
    "oxylabs": r"^/v1/schedules$",
}
SANDBOX: dict[str, dict[str, Any]] = {
    "reworkd": {"groups": ["g-a", "g-b"], "records_per_group": 60},
    "scrapewise": {"runs_per_scraper": 3},
    "opencx": {"rate_limit": 1000},
    "outscraper": {},
    "oxylabs": {"schedules": 2},
}
SECRET_KEYS = ("api_key", "password")
REQUEST_TIMEOUT = 1.0


@dataclass(frozen=True)
class Fault:
    """Faults on the main list endpoint, in a row, and what the sync must do about them.

    A transient fault (`fails_with` None) hits one attempt; the faults of one row hit the
    consecutive attempts of one request, no more of them than the retries allow
    (RUNTIME__REQUEST_MAX_ATTEMPTS=4 in conftest), so the sync must succeed.
    """

    name: str
    rules: tuple[FaultRule, ...]
    fails_with: str | None = None  # None: the sync must succeed despite the faults


def status(code: int, times: int | None = 1, retry_after: str | None = None) -> FaultRule:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return FaultRule(kind="status", status=code, headers=headers, times=times)


def kind(name: str, times: int | None = 1, **fields: Any) -> FaultRule:
    return FaultRule(kind=name, times=times, **fields)


FAULTS = [
    Fault(
        "429 with Retry-After 1, without, with 0",
        (status(429, retry_after="1"), status(429), status(429, retry_after="0")),
    ),
    Fault("429 asking for a day", (status(429, None, retry_after="86400"),), "asks to wait"),
    Fault("500, 502, 503", (status(500), status(502), status(503))),
    Fault("503 for good", (status(503, None),), "gave up"),
    Fault(
        "524, connection reset, truncated body",
        (status(524), kind("drop"), kind("truncate")),
    ),
    Fault("HTML page with 200", (kind("html", None),), "malformed response"),
    Fault("read timeout, twice", (kind("delay", 2, delay=REQUEST_TIMEOUT + 1.5),)),
    Fault("invalid JSON", (kind("malformed", None),), "malformed response"),
]


# the other endpoints a sync reads (after the data changed), each with a short fault table
ENDPOINTS = [
    ("scrapewise", r"^/api/scraper/[0-9a-f]{24}$"),  # scraper details
    ("scrapewise", r"^/api/scraper/data/group/"),  # rows of finished runs
    ("scrapewise", r"/errors$"),  # failed links of finished runs
    ("opencx", r"^/crawl/[^/]+$"),  # datasource details
    ("opencx", r"^/crawl/[^/]+/crawls$"),  # crawl job history
    ("outscraper", r"^/requests$"),
    ("outscraper", r"^/requests/[^/]+$"),
    ("outscraper", r"^/files/"),  # task result files
    ("oxylabs", r"^/v1/schedules/\d+$"),
    ("oxylabs", r"^/v1/schedules/\d+/runs$"),
    ("oxylabs", r"^/v1/queries/\d+/results$"),  # results of the scheduled jobs
]
ENDPOINT_FAULTS = [
    Fault("503, then 502", (status(503), status(502))),
    Fault("HTML page with 200", (kind("html", None),), "malformed response"),
]


def snapshot(provider: str) -> tuple[dict[str, list[str]], Any]:
    """Every row of the provider's tables, and its dlt source state."""
    pipeline = pipeline_for(provider)
    rows = {
        table: sorted(map(repr, read_rows(pipeline, table, "*")))
        for table in merge_tables(pipeline.default_schema)
    }
    state: TPipelineState = pipeline.state
    return rows, repr(state.get("sources"))


class Run:
    def __init__(self, sandbox: Any, provider: str) -> None:
        self.sandbox, self.provider = sandbox, provider
        self.api = sandbox.providers[provider]
        self.errors: list[str] = []

    def options(self, **overrides: Any) -> dict[str, Any]:
        return {**self.api.source_options(self.sandbox.url(self.provider)), **overrides}

    def sync(self, **overrides: Any) -> SyncReport:
        report = sync(registry.get(self.provider), source_options=self.options(**overrides))
        self.errors.append(report.error or "")
        return report

    def check_truth(self, label: str) -> None:
        problems = mismatches(pipeline_for(self.provider), self.provider, self.api)
        assert problems == [], f"{label}: " + "\n".join(problems)


def apply_fault(run: Run, fault: Fault, path: str | None = None) -> None:
    provider = run.provider
    before = snapshot(provider)
    run.sandbox.advance()
    rules = [replace(r, provider=provider, path=path or MAIN_LIST[provider]) for r in fault.rules]
    for rule in rules:
        run.sandbox.faults.add(rule)
    run.sandbox.requests.clear()

    report = run.sync()

    run.sandbox.faults.clear()
    for rule in rules:
        if rule.times is None:
            served = [r for r in run.sandbox.requests.entries(provider) if r.fault]
            assert served, f"{fault.name}: the fault was never injected"
        else:  # consumed when taken (a delayed answer is logged only after its delay)
            assert rule.times == 0, f"{fault.name}: a planned {rule.kind} was never injected"
    if fault.fails_with is None:
        assert report.ok, f"{fault.name}: {report.error}"
        run.check_truth(fault.name)
        return
    assert not report.ok, f"{fault.name}: the sync succeeded on a permanent fault"
    assert report.error
    assert report.error.startswith(f"{provider}:"), f"{fault.name}: {report.error}"
    assert fault.fails_with in report.error, f"{fault.name}: {report.error}"
    assert snapshot(provider) == before, f"{fault.name}: a failed sync changed data or state"


def leaks(secrets: set[str], texts: dict[str, bytes]) -> list[str]:
    return [
        f"{where} holds {secret[:3]}..."
        for where, text in texts.items()
        for secret in secrets
        if secret.encode() in text
    ]


def working_dir_texts(data_dir: Path) -> dict[str, bytes]:
    """Every file of dlt's working dir; compressed packages are read decompressed too."""
    texts = {}
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data += gzip.decompress(data)
            texts[str(path)] = data
    return texts


def destination_texts(provider: str) -> dict[str, bytes]:
    """Every table of the dataset (dlt's own included, the stored state decompressed)."""
    pipeline = pipeline_for(provider)
    texts = {}
    for table in pipeline.default_schema.tables:
        rows = read_rows(pipeline, table, "*") if not table.startswith("_dlt") else []
        texts[table] = repr(rows).encode()
    with pipeline.sql_client() as client:
        states = client.execute_sql(
            f"SELECT state FROM {client.make_qualified_table_name('_dlt_pipeline_state')}"
        )
        versions = client.execute_sql(
            f"SELECT schema FROM {client.make_qualified_table_name('_dlt_version')}"
        )
    for index, (state,) in enumerate(states or []):
        texts[f"_dlt_pipeline_state[{index}]"] = zlib.decompress(base64.b64decode(state))
    texts["_dlt_version"] = repr(versions).encode()
    return texts


@pytest.mark.parametrize("provider", list(MAIN_LIST))
def test_given_faults_on_the_main_list_then_each_sync_succeeds_correctly_or_fails_cleanly(
    make_sandbox: Any,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    provider: str,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("RUNTIME__REQUEST_TIMEOUT", str(REQUEST_TIMEOUT))
    options = dict(SANDBOX[provider])
    if provider == "oxylabs":
        options["workdir"] = str(isolated / "oxylabs-sandbox")
    run = Run(make_sandbox(**{provider: options}), provider)
    first = run.sync()
    assert first.ok, first.error
    run.check_truth("first sync")

    for fault in FAULTS:
        apply_fault(run, fault)

    # a wrong credential: rejected with a clear error, and never echoed
    wrong = {key: f"wrong-{key}-9f2c41d7" for key in SECRET_KEYS if key in run.options()}
    assert not run.sync(**wrong).ok
    final = run.sync()
    assert final.ok, final.error
    run.check_truth("after every fault")

    secrets = {str(run.options()[key]) for key in SECRET_KEYS if key in run.options()}
    secrets |= set(wrong.values())
    captured = capfd.readouterr()
    texts = {
        "logs": caplog.text.encode(),
        "stdout": captured.out.encode(),
        "stderr": captured.err.encode(),
        "errors": "\n".join(run.errors).encode(),
        **working_dir_texts(isolated / "dlt"),
        **destination_texts(provider),
    }
    # the scan reads real content: the decompressed state and the failed syncs' errors
    assert any(b'"sources"' in text for where, text in texts.items() if "state" in where)
    assert sum(bool(error) for error in run.errors) == 1 + sum(bool(f.fails_with) for f in FAULTS)
    assert leaks(secrets, texts) == []


@pytest.mark.parametrize("provider", sorted({provider for provider, _ in ENDPOINTS}))
def test_given_faults_on_other_endpoints_then_each_sync_succeeds_correctly_or_fails_cleanly(
    make_sandbox: Any, isolated: Path, provider: str
) -> None:
    options = dict(SANDBOX[provider])
    if provider == "oxylabs":
        options["workdir"] = str(isolated / "oxylabs-sandbox")
    run = Run(make_sandbox(**{provider: options}), provider)
    first = run.sync()
    assert first.ok, first.error

    for path in [path for name, path in ENDPOINTS if name == provider]:
        for fault in ENDPOINT_FAULTS:
            apply_fault(run, replace(fault, name=f"{path}: {fault.name}"), path)

    final = run.sync()
    assert final.ok, final.error
    run.check_truth("after the faults")
