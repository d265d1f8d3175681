"""`scrapesync oxylabs ...`: submit jobs, wait for them, inspect and resolve the journal.

scrapesync oxylabs submit [VALUE ...] [--file F] [--url] --source S [job parameters] [--force]
                          [--wait [--timeout S]]
scrapesync oxylabs collect [--wait [--timeout S]]
scrapesync oxylabs status
scrapesync oxylabs resolve BATCH_ID (--resubmit | --abandon)

Credentials and options come from dlt config like a sync's (`sources.oxylabs.*`, env
`SOURCES__OXYLABS__USERNAME`, ...).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import orjson

from scrapesync.sources.common.ids import HEX32, checked_id
from scrapesync.sources.common.inbox import WebhookRequest
from scrapesync.sources.common.provider import Host
from scrapesync.sources.common.redact import register_secret_path
from scrapesync.sources.oxylabs.callbacks import CallbackHandler, check_settings
from scrapesync.sources.oxylabs.resources import Oxylabs, connect
from scrapesync.sources.oxylabs.submit import SubmitReport, force_command

JOB_FLAGS = (
    ("--source", str, "Oxylabs source, e.g. universal, google_search (required)"),
    ("--render", str, "render mode, e.g. html"),
    ("--geo-location", str, "geo_location"),
    ("--domain", str, "domain, e.g. com"),
    ("--locale", str, "locale"),
    ("--pages", int, "pages to scrape"),
    ("--start-page", int, "start_page"),
    ("--user-agent-type", str, "user_agent_type"),
    ("--callback-url", str, "callback_url (e.g. the `scrapesync listen` URL with its token)"),
    ("--storage-type", str, "storage_type (s3, gcs, ...): results go to your bucket"),
    ("--storage-url", str, "storage_url: bucket (and path) for <job_id>.json"),
    ("--client-notes", str, "client_notes"),
)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def configured(**overrides: Any) -> dict[str, Any]:
    """`connect` arguments from dlt config/secrets (`sources.oxylabs.<name>`)."""
    values: dict[str, Any] = {}
    for name, parameter in inspect.signature(connect).parameters.items():
        if name in ("stats", "ledger"):
            continue
        # env values arrive as text: coerce numbers and flags to their parameter's type, as
        # dlt does for a source's arguments (SOURCES__OXYLABS__BATCH_SIZE=5 is the int 5)
        default = parameter.default
        kind: Any = type(default) if isinstance(default, bool | int | float) else None
        value: Any = dlt.secrets.get(f"sources.oxylabs.{name}", kind)
        if value is None:
            value = dlt.config.get(f"sources.oxylabs.{name}", kind)
        if value is not None:
            values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def open_oxylabs() -> Oxylabs:
    options = configured()
    return connect(
        username=options.pop("username", ""), password=options.pop("password", ""), **options
    )


def job_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for flag, _, _ in JOB_FLAGS:
        name = flag.removeprefix("--").replace("-", "_")
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    if args.parse:
        params["parse"] = True
    if args.context:
        params["context"] = [_pair(item, json_value=True) for item in args.context]
    for item in args.param or []:
        key, value = _pair(item, json_value=True).values()
        params[key] = value
    return params


def _pair(item: str, json_value: bool) -> dict[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep:
        raise SystemExit(f"scrapesync: expected KEY=VALUE, got {item!r}")
    value: Any = raw
    if json_value:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
    return {"key": key, "value": value}


def read_values(args: argparse.Namespace) -> list[str]:
    values = list(args.values or [])
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        values += [line.strip() for line in text.splitlines() if line.strip()]
    if not values:
        raise SystemExit("scrapesync: nothing to submit: give values or --file")
    return values


def format_submit(report: SubmitReport) -> str:
    lines = [
        f"oxylabs: submitted {report.submitted} jobs in {len(report.batches)} batch(es); "
        f"{report.already_known} already in the journal (not resubmitted; --force to resubmit)"
        + (
            f"; {report.duplicates_in_input} duplicates in the input"
            if report.duplicates_in_input
            else ""
        )
    ]
    if report.resolved:
        lines.append(f"  recovered {report.resolved} job ids from callbacks")
    for batch_id, message in report.rejected:
        lines.append(f"  batch {batch_id} REJECTED (nothing created): {message}")
    for batch_id in dict.fromkeys(report.unknown):
        lines.append(
            f"  batch {batch_id}: outcome UNKNOWN (it may have been created): not resubmitted. "
            f"If no callback/job of it shows up, force it: {force_command(batch_id)}"
        )
    return "\n".join(lines)


def cmd_submit(args: argparse.Namespace) -> int:
    values = read_values(args)
    ox = open_oxylabs()
    kind = "url" if args.url else "query"
    try:
        # one run of the provider at a time: a sync collecting while jobs are submitted is fine
        # for the ledger, but two submitters on two workers must not interleave their batches
        with args.host.lease("oxylabs", "submit"):
            report = ox.submitter.submit(values, kind, job_params(args), force=args.force)
    except ValueError as exc:
        _out(f"scrapesync: {exc}")
        return 2
    _out(format_submit(report))
    code = 1 if report.rejected or report.unknown else 0
    if args.wait:
        code = max(code, wait_for_jobs(ox, args.host, args.timeout, args.poll_interval))
    return code


def cmd_collect(args: argparse.Namespace) -> int:
    if args.wait:
        return wait_for_jobs(open_oxylabs(), args.host, args.timeout, args.poll_interval)
    return 0 if run_sync(args.host) else 1


def run_sync(host: Host) -> bool:
    """One sync of Oxylabs through the command line's runner (collects finished jobs)."""
    return host.sync("oxylabs")


def wait_for_jobs(
    ox: Oxylabs,
    host: Host,
    timeout: float,
    interval: float,
    sync_once: Callable[[], bool] | None = None,
) -> int:
    """Sync until no job is pending (0), a sync fails (1) or `timeout` seconds pass (3).

    The pause between syncs starts at `interval` and grows 1.5x while nothing finishes (up to
    60 s); it drops back as soon as a sync sees jobs finish.
    """
    sync_once = sync_once or (lambda: run_sync(host))
    deadline = time.monotonic() + timeout
    pause = interval
    before = _pending(ox)
    while True:
        if not sync_once():
            return 1
        left = _pending(ox)
        if not left:
            _out("oxylabs: every job is terminal")
            return 0
        pause = interval if left < before else min(pause * 1.5, 60.0)
        before = left
        if time.monotonic() + pause > deadline:
            _out(f"oxylabs: {left} jobs still pending after {timeout:.0f} s")
            return 3
        _out(f"oxylabs: {left} jobs pending; next poll in {pause:.1f} s")
        time.sleep(pause)


def _pending(ox: Oxylabs) -> int:
    rows = ox.journal.query(
        "SELECT count(*) AS n FROM jobs WHERE job_id IS NOT NULL AND collected_at IS NULL"
        " AND status IN ('pending', 'done')"
    )
    return int(rows[0]["n"])


def cmd_status(_: argparse.Namespace) -> int:
    ox = open_oxylabs()
    _out(f"oxylabs journal {ox.journal.path}")
    for row in ox.journal.query(
        "SELECT status, count(*) AS n FROM jobs GROUP BY status ORDER BY 1"
    ):
        _out(f"  jobs {row['status']:<12}{row['n']:>10}")
    for batch in ox.journal.batches(("unknown", "sending", "planned")):
        _out(
            f"  batch {batch['batch_id']} {batch['state']} ({batch['size']} jobs): {batch['note']}"
        )
    return 0


# the journal names batches `uuid4().hex` (submit.py); `status` lists the undecided ones
BATCH_ID = HEX32.named("batch id")
BATCH_ARG = "the BATCH_ID argument (`scrapesync oxylabs status` lists undecided batches)"


def cmd_resolve(args: argparse.Namespace) -> int:
    """Decide an `unknown` batch; any other batch, or an id the journal lacks, is an error."""
    try:
        batch_id = checked_id(
            args.batch_id, BATCH_ID, provider="oxylabs", action="resolve", fix=BATCH_ARG
        )
        ox = open_oxylabs()
        undecided_batch(ox, batch_id)
        if args.abandon:
            ox.submitter.abandon(batch_id)
            _out(f"oxylabs: batch {batch_id} abandoned")
            return 0
        report = ox.submitter.resubmit_unknown(batch_id)
    except ValueError as exc:
        sys.stderr.write(f"scrapesync: {exc}\n")
        return 2
    _out(format_submit(report))
    return 0


def undecided_batch(ox: Oxylabs, batch_id: str) -> None:
    """Raise `ValueError` unless `batch_id` is a journal batch whose outcome is `unknown`:
    only those wait for a decision; a submitted, rejected or abandoned one is decided."""
    rows = ox.journal.query("SELECT state FROM batches WHERE batch_id = ?", (batch_id,))
    if not rows:
        raise ValueError(
            f"oxylabs: resolve: no batch {batch_id} in the journal {ox.journal.path}: "
            "`scrapesync oxylabs status` lists the batches waiting for a decision"
        )
    state = rows[0]["state"]
    if state != "unknown":
        raise ValueError(
            f"oxylabs: resolve: batch {batch_id} is {state}, not unknown: only a batch whose "
            "outcome is unknown can be resubmitted or abandoned; nothing was changed"
        )


def _wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="sync until every job is terminal")
    parser.add_argument("--timeout", type=float, default=3600.0, help="--wait limit (s)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="first pause (s)")


def register(commands: argparse._SubParsersAction) -> None:
    """Add `scrapesync oxylabs <action>` (the registry's `cli` hook)."""
    top = commands.add_parser("oxylabs", help="Oxylabs push-pull jobs: submit, collect, resolve")
    actions = top.add_subparsers(dest="action", required=True)

    submit = actions.add_parser("submit", help="submit queries or URLs as jobs (batched)")
    submit.add_argument("values", nargs="*", help="queries (or URLs with --url)")
    submit.add_argument("--file", help="one value per line ('-' for stdin)")
    submit.add_argument("--url", action="store_true", help="values are URLs, not queries")
    for flag, kind, text in JOB_FLAGS:
        submit.add_argument(flag, type=kind, help=text, required=flag == "--source")
    submit.add_argument("--parse", action="store_true", help="ask for parsed results")
    submit.add_argument("--context", action="append", help="context KEY=VALUE (repeatable)")
    submit.add_argument("--param", action="append", help="any other parameter KEY=JSON")
    submit.add_argument("--force", action="store_true", help="resubmit known queries too")
    _wait_flags(submit)
    submit.set_defaults(func=cmd_submit)

    collect = actions.add_parser("collect", help="sync oxylabs (poll and download results)")
    _wait_flags(collect)
    collect.set_defaults(func=cmd_collect)

    actions.add_parser(
        "status", help="journal summary and batches needing a decision"
    ).set_defaults(func=cmd_status)
    resolve = actions.add_parser("resolve", help="decide an unknown-outcome batch")
    resolve.add_argument("batch_id")
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument("--resubmit", action="store_true", help="submit its jobs again")
    choice.add_argument("--abandon", action="store_true", help="give it up")
    resolve.set_defaults(func=cmd_resolve)


# `scrapesync listen` takes callbacks at `/oxylabs/<callback_token>`: in any URL that is
# logged or stored, the segment after `oxylabs` is that secret token
register_secret_path("oxylabs")


class ListenHandler:
    """`scrapesync listen` handler for `POST /oxylabs/<callback_token>` (built on first use)."""

    def __init__(self, build: Callable[[], CallbackHandler] = CallbackHandler.from_config) -> None:
        self._build = build
        self._handler: CallbackHandler | None = None

    def prepare(self) -> None:
        """`scrapesync listen`'s startup check: a bad callback setting stops it, naming it."""
        check_settings()

    def __call__(self, request: WebhookRequest) -> list[Any]:
        if self._handler is None:
            self._handler = self._build()
        # a refusal raises CallbackRejected, an inbox `Rejected`: the intake answers it
        self._handler.accept(request.remote, request.path, request.body)
        # the journal holds the callback (and its body); the shared store needs no copy
        return []
