"""Secrets never leak: real syncs and actions from the command line against the sandbox, good
runs, failing runs whose provider echoes the key, and webhook traffic; then every log line,
stdout and stderr, every file of the working directory (dlt's working dir and load packages
included, compressed ones decompressed) and every table of the destination (staging datasets,
dlt's own tables and the stored state included) is searched for every secret.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from scrapesync.pipelines.cli import main
from scrapesync.pipelines.listen import IntakeServer, NotificationStore, provider_handlers
from scrapesync.sandbox import FaultRule

MAIN_LIST = {
    "reworkd": r"^/v1/outputs/",
    "scrapewise": r"^/api/scraper/load-history$",
    "opencx": r"^/crawl$",
    "outscraper": r"^/tasks$",
    "oxylabs": r"^/v1/schedules$",
}
SANDBOX: dict[str, dict[str, Any]] = {
    "reworkd": {"groups": ["g-a"], "records_per_group": 20},
    "scrapewise": {"runs_per_scraper": 2},
    "opencx": {"rate_limit": 1000},
    "outscraper": {},
    "oxylabs": {"schedules": 1},
}
SECRET_SETTINGS = ("api_key", "password", "callback_token")
CALLBACK_TOKEN = "cbtok-6d0f3b8e2a9c41d7b5e3"
WRONG = "wrong-key-9f2c41d7e8b3"


def echoing_bodies(secret: str) -> list[tuple[int, str, str]]:
    """(status, content type, body) answers that quote the secret back in every field the
    providers' error envelopes use, or open a non-JSON page with it."""
    fields = ("message", "error", "errorMessage", "detail", "title", "errors")
    echo = orjson.dumps(dict.fromkeys(fields, f"invalid credential {secret}")).decode()
    return [
        (401, "application/json", echo),
        (403, "application/json", echo),
        (200, "text/html", f"{secret} <html>denied for {secret}</html>"),
    ]


class Scenario:
    """One provider configured from env vars (as in production), driven through `main`."""

    def __init__(self, h: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
        self.h, self.provider, self.isolated = h, h.provider, isolated
        self.monkeypatch = monkeypatch
        self.options = {k: v for k, v in h.options().items() if v is not None}
        for key, value in self.options.items():
            self.setenv(key, value)
        self.secrets = {str(self.options[k]) for k in SECRET_SETTINGS if k in self.options}

    def setenv(self, key: str, value: Any) -> None:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        self.monkeypatch.setenv(f"SOURCES__{self.provider.upper()}__{key.upper()}", text)

    def sync(self) -> int:
        return main(["-v", "sync", self.provider])

    def secret(self) -> str:
        return str(self.options.get("api_key") or self.options["password"])

    def fail_with_echoes(self) -> None:
        for status, kind, body in echoing_bodies(self.secret()):
            rule = FaultRule(
                provider=self.provider,
                path=MAIN_LIST[self.provider],
                status=status,
                body=body,
                headers={"Content-Type": kind},
                times=None,
            )
            self.h.sandbox.faults.add(rule)
            self.h.sandbox.advance()
            assert self.sync() == 1, f"an echoing {status} did not fail the sync"
            self.h.sandbox.faults.clear()

    def wrong_credential(self) -> None:
        key = "api_key" if "api_key" in self.options else "password"
        self.setenv(key, WRONG)
        self.secrets.add(WRONG)
        assert self.sync() == 1
        self.setenv(key, self.options[key])


def post(url: str, body: bytes, source: str = "127.0.0.1") -> int:
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), source_address=(source, 0), timeout=5)
    try:
        conn.request("POST", "/" + url.split("/", 3)[3], body)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def intake(isolated: Path) -> Iterator[Callable[[], IntakeServer]]:
    servers: list[IntakeServer] = []

    def start() -> IntakeServer:
        server = IntakeServer(NotificationStore(isolated / "webhooks"), provider_handlers())
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


def oxylabs_traffic(s: Scenario, intake: Callable[[], IntakeServer]) -> None:
    """Callbacks with right and wrong tokens, and a submit whose callback URL holds the token."""
    s.setenv("callback_token", CALLBACK_TOKEN)
    s.secrets.add(CALLBACK_TOKEN)
    server = intake()
    hook = f"{server.url}/oxylabs/{CALLBACK_TOKEN}"
    submit = ["oxylabs", "submit", "secret shoes", "--source", "google_search"]
    assert main([*submit, "--callback-url", hook]) == 0
    job = orjson.dumps({"id": "7300439540206948353", "status": "done", "query": "x"})
    other = "other-token-55aa66bb77cc"
    s.secrets.add(other)
    assert post(hook, job, source="127.0.0.1") == 403  # not an Oxylabs sender address
    assert post(f"{server.url}/oxylabs/{other}", job, source="127.0.0.2") in (403, 404)
    assert post(hook, b"<html>", source="127.0.0.2") == 400
    s.h.api.advance()
    s.h.api.deliver_callbacks()


def outscraper_traffic(s: Scenario, intake: Callable[[], IntakeServer]) -> None:
    """Signed deliveries from the sandbox, and one forged delivery that is refused."""
    server = intake()
    s.h.api.webhook_url = f"{server.url}/outscraper/hook"
    running = next(t for t in s.h.api.tasks.values() if t.status == "IN_PROGRESS")
    s.h.api.finish_task(running.id)
    forged = orjson.dumps({"id": running.id, "status": "SUCCESS", "apiKey": s.secret()})
    assert post(f"{server.url}/outscraper/hook", forged) == 401


TRAFFIC: dict[str, Callable[[Scenario, Callable[[], IntakeServer]], None]] = {
    "oxylabs": oxylabs_traffic,
    "outscraper": outscraper_traffic,
}


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below `root`; gzip files also decompressed."""
    texts = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data += gzip.decompress(data)
            texts[str(path.relative_to(root))] = data
    return texts


def tables_of(database: Path) -> dict[str, bytes]:
    """Every table of every schema (staging datasets and dlt's own tables included), with the
    stored pipeline state decompressed."""
    texts = {}
    with duckdb.connect(str(database), read_only=True) as db:
        tables = db.execute(
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables"
        ).fetchall()
        for catalog, schema, table in tables:
            name = f'"{catalog}"."{schema}"."{table}"'
            rows = db.execute(f"SELECT * FROM {name}").fetchall()
            texts[f"{schema}.{table}"] = repr(rows).encode()
            if table == "_dlt_pipeline_state":
                states = db.execute(f"SELECT state FROM {name}").fetchall()
                for index, (state,) in enumerate(states):
                    texts[f"{schema}.{table}[{index}]"] = zlib.decompress(base64.b64decode(state))
    return texts


def leaks(secrets: set[str], texts: dict[str, bytes]) -> list[str]:
    return [
        f"{where} holds {secret[:4]}..."
        for where, text in texts.items()
        for secret in sorted(secrets)
        if secret.encode() in text
    ]


@pytest.mark.parametrize("provider", list(MAIN_LIST))
def test_given_good_runs_echoing_failures_and_webhooks_then_no_secret_is_anywhere(
    harness: Any,
    monkeypatch: pytest.MonkeyPatch,
    isolated: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    intake: Callable[[], IntakeServer],
    provider: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    options = dict(SANDBOX[provider])
    if provider == "oxylabs":
        options["workdir"] = str(isolated / "oxylabs-sandbox")
    s = Scenario(harness(provider, **options), monkeypatch, isolated)

    assert s.sync() == 0
    s.fail_with_echoes()
    s.wrong_credential()
    if provider in TRAFFIC:
        TRAFFIC[provider](s, intake)
    assert s.sync() == 0

    captured = capfd.readouterr()
    texts = {
        "logs": caplog.text.encode(),
        "stdout": captured.out.encode(),
        "stderr": captured.err.encode(),
        **files_under(isolated / "dlt"),
        **{f"webhooks/{k}": v for k, v in files_under(isolated / "webhooks").items()},
        **tables_of(isolated / "scrapesync.duckdb"),
    }
    assert leaks(s.secrets, texts) == []
    # the search read real content: failures were reported and stored, state and packages
    assert captured.out.count("invalid credential ***") >= 2, captured.out
    errors = texts["scrapesync.sync_runs"]
    assert errors.count(b"invalid credential ***") >= 2
    assert any(b'"sources"' in text for where, text in texts.items() if "state[" in where)
    assert any("/load/loaded/" in where for where in texts), "no load package was searched"
    assert any("_staging." in where for where in texts), "no staging dataset was searched"
