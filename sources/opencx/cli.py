"""`scrapesync opencx crawl|cancel|pause|resume`: crawl control for open.cx datasources.

crawl DATASOURCE_ID [--wait]   -> `POST /crawl/{id}/crawls` (inferred); `--wait` follows the
                                  job (`GET /crawl/{id}/crawls/{jobId}`) with a progress bar
cancel DATASOURCE_ID JOB_ID    -> `POST /crawl/{id}/crawls/{jobId}/cancel` (inferred)
pause|resume DATASOURCE_ID     -> `PATCH /crawl/{id}` with `status` paused|active (documented)

Paths come from `settings.ENDPOINTS` (docs/opencx.md#endpoints). They need a key with the
`crawl:write` scope. The key, base URL and pace come from the source's config
(`sources.opencx.api_key`, `.base_url`, `.requests_per_minute`, or env vars), so actions share
the sync's 100 requests/minute budget the same way.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import dlt

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.opencx.client import (
    SPEC,
    cancel_crawl,
    get_crawl_job,
    make_client,
    set_datasource_status,
    start_crawl,
)
from scrapesync.sources.opencx.settings import (
    BASE_URL,
    DEFAULT_PACING_WINDOW_SECONDS,
    DEFAULT_REQUESTS_PER_MINUTE,
    TERMINAL_STATUSES,
)

BAR_WIDTH = 30


def _setting(key: str) -> Any:
    value: Any = dlt.secrets.get(f"sources.opencx.{key}")
    return value if value is not None else dlt.config.get(f"sources.opencx.{key}")


def _client() -> ProviderRESTClient:
    api_key = _setting("api_key")
    if not api_key:
        raise ValueError(f"opencx has no API key: {SPEC.auth_hint()}")
    return make_client(
        str(api_key),
        str(_setting("base_url") or BASE_URL),
        float(_setting("requests_per_minute") or DEFAULT_REQUESTS_PER_MINUTE),
        float(_setting("pacing_window_seconds") or DEFAULT_PACING_WINDOW_SECONDS),
    )


def progress_line(job: dict[str, Any]) -> str:
    """`[#####-----] 120/300 pages  40%  scraping` (total unknown while pending: `?`)."""
    done, total = job.get("completed_pages") or 0, job.get("total_pages")
    share = min(1.0, done / total) if total else 0.0
    filled = int(share * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return (
        f"[{bar}] {done}/{total if total is not None else '?'} pages {share:4.0%}  {job['status']}"
    )


def summary_line(job: dict[str, Any]) -> str:
    counters = ", ".join(
        f"{job.get(f'{name}_pages') or 0} {name}"
        for name in ("new", "updated", "removed", "unchanged")
    )
    line = f"opencx: crawl {job['id']} {job['status']}: {counters}"
    return line + (f" ({job['error_message']})" if job.get("error_message") else "")


def follow(
    client: ProviderRESTClient,
    datasource_id: str,
    job: dict[str, Any],
    interval: float,
    timeout: float | None,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the job until it ends (or `timeout` s pass), drawing progress on `out`."""
    started, last = time.monotonic(), ""
    tty = out.isatty()
    while True:
        line = progress_line(job)
        if line != last:
            out.write(("\r" + line) if tty else (line + "\n"))
            out.flush()
            last = line
        if job["status"] in TERMINAL_STATUSES:
            break
        if timeout is not None and time.monotonic() - started >= timeout:
            break
        sleep(interval)
        job = get_crawl_job(client, datasource_id, job["id"])
    if tty:
        out.write("\n")
    return job


def cmd_crawl(args: argparse.Namespace) -> int:
    client = _client()
    job = start_crawl(client, args.datasource_id)
    sys.stdout.write(f"opencx: crawl {job['id']} started for datasource {args.datasource_id}\n")
    if not args.wait:
        return 0
    job = follow(client, args.datasource_id, job, args.interval, args.timeout, sys.stderr)
    if job["status"] not in TERMINAL_STATUSES:
        sys.stdout.write(
            f"opencx: crawl {job['id']} still {job['status']} after {args.timeout} s\n"
        )
        return 1
    sys.stdout.write(summary_line(job) + "\n")
    return 0 if job["status"] == "completed" else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    job = cancel_crawl(_client(), args.datasource_id, args.job_id)
    sys.stdout.write(summary_line(job) + "\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = "paused" if args.action == "pause" else "active"
    datasource = set_datasource_status(_client(), args.datasource_id, status)
    sys.stdout.write(f"opencx: datasource {datasource['id']} is {datasource['status']}\n")
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Errors as one clear message on stderr and exit code 1 (2 for bad input)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ProviderAPIError as exc:
            sys.stderr.write(f"scrapesync: {exc}\n")
            return 1
        except ValueError as exc:
            sys.stderr.write(f"scrapesync: {exc}\n")
            return 2

    return run


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The registry's `cli` hook: `scrapesync opencx crawl|cancel|pause|resume ...`."""
    parser = commands.add_parser("opencx", help="open.cx crawl control (needs crawl:write)")
    actions = parser.add_subparsers(dest="action", required=True)
    crawl = actions.add_parser("crawl", help="start a crawl of a datasource")
    crawl.add_argument("datasource_id", help="website datasource id (UUID)")
    crawl.add_argument("--wait", action="store_true", help="follow it with a progress bar")
    crawl.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    crawl.add_argument("--timeout", type=float, default=None, help="stop following after N s")
    crawl.set_defaults(func=_guarded(cmd_crawl))
    cancel = actions.add_parser("cancel", help="cancel a pending or running crawl")
    cancel.add_argument("datasource_id", help="website datasource id (UUID)")
    cancel.add_argument("job_id", help="crawl job id (UUID)")
    cancel.set_defaults(func=_guarded(cmd_cancel))
    for name, verb in (("pause", "stop"), ("resume", "restart")):
        status = actions.add_parser(name, help=f"{verb} the datasource's scheduled recrawls")
        status.add_argument("datasource_id", help="website datasource id (UUID)")
        status.set_defaults(func=_guarded(cmd_status))
