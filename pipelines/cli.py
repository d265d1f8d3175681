"""The `scrapesync` command line.

scrapesync sync [PROVIDER ...] [--destination NAME] [--full-refresh] [--discard-pending]
scrapesync demo [--db PATH]
scrapesync sandbox [--port N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import dlt

from scrapesync.pipelines import listen, registry
from scrapesync.pipelines.report import format_report
from scrapesync.pipelines.runner import pipeline_for, sync


def cmd_sync(args: argparse.Namespace) -> int:
    names = args.providers or [p.name for p in registry.PROVIDERS.values() if p.is_configured()]
    if not names:
        example = next(iter(registry.PROVIDERS.values()))
        print(
            f"scrapesync: no provider is configured; set e.g. {example.env_hint()}, "
            f"or name a provider: scrapesync sync {example.name}",
            file=sys.stderr,
        )
        return 2
    try:
        providers = [registry.get(name) for name in names]
    except ValueError as exc:
        print(f"scrapesync: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for provider in providers:
        report = sync(
            provider,
            destination=args.destination,
            full_refresh=args.full_refresh,
            discard_pending=args.discard_pending,
            progress=not args.quiet,
        )
        print(format_report(report), flush=True)
        failed += not report.ok
    return 1 if failed else 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from scrapesync.sandbox import Sandbox

    sandbox = Sandbox.start_default(port=args.port)
    print(f"sandbox serving on {sandbox.base_url} (Ctrl+C to stop)", flush=True)
    for name, provider in sandbox.providers.items():
        options = provider.source_options(sandbox.url(name))
        print(f"  {name}: {options}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from scrapesync.pipelines.demo import run_demo

    return run_demo(args.db)


def cmd_status(args: argparse.Namespace) -> int:
    import orjson

    from scrapesync.pipelines import status
    from scrapesync.pipelines.runner import destination_for

    pipeline = dlt.pipeline(
        pipeline_name="scrapesync_status",
        destination=destination_for(args.destination),
        dataset_name="scrapesync_status",
    )
    statuses = status.collect(pipeline, args.max_age_hours)
    if args.json:
        print(orjson.dumps(status.as_json(statuses), option=orjson.OPT_INDENT_2).decode())
    else:
        print(status.render(statuses))
    return status.exit_code(statuses)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scrapesync", description="Incremental ELT for web-scraping services (dlt)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every page read")
    commands = parser.add_subparsers(dest="command", required=True)

    sync_parser = commands.add_parser("sync", help="sync providers into the destination")
    sync_parser.add_argument(
        "providers",
        nargs="*",
        help=f"providers to sync (default: every configured one of "
        f"{', '.join(registry.PROVIDERS)})",
    )
    sync_parser.add_argument("--destination", default="duckdb", help="dlt destination name")
    sync_parser.add_argument(
        "--full-refresh", action="store_true", help="drop the providers' tables and state, reload"
    )
    sync_parser.add_argument(
        "--discard-pending",
        action="store_true",
        help="give up load packages an earlier sync could not load (their data is read again)",
    )
    sync_parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sync_parser.set_defaults(func=cmd_sync)

    status_parser = commands.add_parser(
        "status", help="last syncs, lag, open jobs and completeness checks per provider"
    )
    status_parser.add_argument("--destination", default="duckdb", help="dlt destination name")
    status_parser.add_argument("--json", action="store_true", help="machine-readable output")
    status_parser.add_argument(
        "--max-age-hours",
        type=float,
        default=24.0,
        help="exit 1 when a provider's last successful sync is older (default 24)",
    )
    status_parser.set_defaults(func=cmd_status)

    demo_parser = commands.add_parser("demo", help="sync every provider from the local sandbox")
    demo_parser.add_argument("--db", default="scrapesync_demo.duckdb", help="DuckDB file")
    demo_parser.set_defaults(func=cmd_demo)

    sandbox_parser = commands.add_parser("sandbox", help="serve the provider sandboxes")
    sandbox_parser.add_argument("--port", type=int, default=8765)
    sandbox_parser.set_defaults(func=cmd_sandbox)

    listen.add_command(commands)
    for provider in registry.PROVIDERS.values():
        if provider.actions is not None:
            provider.actions(commands)
    parser.set_defaults(host=CommandLineHost())
    return parser


class CommandLineHost:
    """What provider actions may ask of the command line (`args.host`, a `Host`)."""

    def sync(self, provider: str) -> bool:
        report = sync(registry.get(provider), progress=False)
        print(format_report(report), flush=True)
        return report.ok

    def pipeline(self, provider: str, destination: str = "duckdb") -> dlt.Pipeline:
        return pipeline_for(provider, destination)


class _QuietArrowHints(logging.Filter):
    """Drop dlt's warning that Arrow nullability differs from the declared hints.

    scrapesync declares its key columns non-nullable while Arrow infers them nullable; dlt keeps
    the declared hints (the right outcome) but warns once per page, drowning real warnings.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema with dlt schema" not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addFilter(_QuietArrowHints())
    if args.verbose:
        dlt_logger.setLevel(logging.INFO)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
