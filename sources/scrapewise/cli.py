"""`scrapesync scrapewise ...`: merge runs, delete a run's data (two calls), run and stop.

Credentials come from the same config as the sync: `sources.scrapewise.api_key` (env
SOURCES__SCRAPEWISE__API_KEY) and optional `sources.scrapewise.base_url`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

import dlt

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.scrapewise.actions import (
    commit_delete,
    merge_runs,
    preview_delete,
    remove_run_rows,
    run_scraper,
    stop_scraper,
)
from scrapesync.sources.scrapewise.client import make_client
from scrapesync.sources.scrapewise.settings import BASE_URL


def say(text: str) -> None:
    """One line to the user (stdout; library code logs instead)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def action_client() -> ProviderRESTClient:
    """The Scrapewise client configured the dlt way (env, secrets.toml, config.toml)."""
    api_key: Any = dlt.secrets.get("sources.scrapewise.api_key")
    base_url: Any = dlt.config.get("sources.scrapewise.base_url") or BASE_URL
    return make_client(str(api_key or ""), str(base_url))


def cmd_merge(args: argparse.Namespace) -> int:
    merged = merge_runs(action_client(), args.group_id, args.job_ids)
    say(f"scrapewise: merged {merged} items into the enriched dataset of group {args.group_id}")
    return 0


def confirm(question: str, stdin: TextIO, stdout: TextIO) -> bool:
    """Ask on the terminal; a non-interactive stdin never counts as a yes."""
    if not stdin.isatty():
        stdout.write("scrapewise: not a terminal: pass --yes to confirm in scripts\n")
        return False
    stdout.write(f"{question} [y/N] ")
    stdout.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def cmd_delete_run_data(
    args: argparse.Namespace,
    ask: Callable[[str, TextIO, TextIO], bool] = confirm,
) -> int:
    client = action_client()
    preview = preview_delete(client, args.job_id)
    say(preview.describe())
    if not args.yes and not ask("Delete these rows permanently?", sys.stdin, sys.stdout):
        say("scrapewise: nothing deleted")
        return 1
    commit_delete(client, preview)
    removed = remove_run_rows(args.host.pipeline("scrapewise", args.destination), args.job_id)
    say(
        f"scrapewise: deleted the rows of run {args.job_id} at Scrapewise and {removed} "
        "row(s) of it from the destination"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    run_scraper(action_client(), args.scraper_id)
    say(f"scrapewise: run of scraper {args.scraper_id} queued (PENDING)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    stop_scraper(action_client(), args.scraper_id)
    say(f"scrapewise: scraper {args.scraper_id} stopped (its active run is STOPPED)")
    return 0


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Errors as one clear message and exit code 1, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (ProviderAPIError, ValueError, TypeError) as exc:
            say(f"scrapewise: {exc}" if not str(exc).startswith("scrapewise") else str(exc))
            return 1

    return run


def add_commands(commands: Any) -> None:
    """Add `scrapesync scrapewise <action>` to the CLI's subparsers."""
    parser = commands.add_parser("scrapewise", help="Scrapewise actions (merge, delete, run)")
    actions = parser.add_subparsers(dest="action", required=True)

    merge = actions.add_parser("merge", help="merge runs into the group's enriched dataset")
    merge.add_argument("group_id", metavar="GROUP_ID")
    merge.add_argument("job_ids", metavar="JOB_ID", nargs="+")
    merge.set_defaults(func=_guarded(cmd_merge))

    delete = actions.add_parser(
        "delete-run-data",
        help="delete one run's scraped rows (preview, confirm, commit), here and at Scrapewise",
    )
    delete.add_argument("job_id", metavar="JOB_ID")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--destination", default="duckdb", help="dlt destination to mirror")
    delete.set_defaults(func=_guarded(cmd_delete_run_data))

    for name, func, text in (
        ("run", cmd_run, "queue a run of a scraper"),
        ("stop", cmd_stop, "stop a scraper's active run"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("scraper_id", metavar="SCRAPER_ID")
        action.set_defaults(func=_guarded(func))
