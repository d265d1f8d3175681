"""The `scrapesync` command line.

scrapesync sync [PROVIDER ...] [--destination NAME] [--full-refresh] [--discard-pending]
    [--transform] [--shard i/N]
    exit 0: every sync ok; 1: a sync failed; 2: usage; 75: another run held a provider's lease
scrapesync status [--destination NAME] [--json] [--max-age-hours H] [--wait SECONDS]
scrapesync demo [--db PATH]
scrapesync report --output FILE [--destination NAME]
scrapesync transform [--select NODE ...] [--destination NAME] [--dbt-dir DIR]
    exit 0: every model and test passed; 1: one failed
scrapesync sandbox [--port N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import dlt

from scrapesync.pipelines import listen, registry
from scrapesync.pipelines.lease import EXIT_LEASE_HELD, LeaseHeldError
from scrapesync.pipelines.report import SyncReport, format_report
from scrapesync.pipelines.runner import NotRunReport, pipeline_for, run_lease, sync
from scrapesync.pipelines.warehouse import DestinationUnavailableError
from scrapesync.sources.common.redact import redact, register_run_secrets


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
        print(f"scrapesync: {redact(exc)}", file=sys.stderr)
        return 2
    if args.shard is not None and len(providers) != 1:
        # a shard is a share of one provider's partitions; each provider splits its own
        print(
            "scrapesync: --shard needs exactly one provider, e.g. `scrapesync sync <provider> "
            "--shard 0/4`",
            file=sys.stderr,
        )
        return 2
    reports = []
    for provider in providers:
        report = sync(
            provider,
            destination=args.destination,
            full_refresh=args.full_refresh,
            discard_pending=args.discard_pending,
            progress=not args.quiet,
            shard=args.shard,
        )
        print_report(report)
        reports.append(report)
    code = sync_exit_code(reports)
    if args.transform:
        # the models cover whatever landed, so they are built even after a failed sync
        transformed = run_transform(args.destination, None, None, args.verbose)
        code = code or transformed
    return code


def cmd_transform(args: argparse.Namespace) -> int:
    return run_transform(args.destination, args.select, args.dbt_dir, args.verbose)


def run_transform(
    destination: str, select: Sequence[str] | None, dbt_dir: str | None, verbose: bool
) -> int:
    """Build the dbt models (pipelines/transform.py); 0 when every model and test passed."""
    from scrapesync.pipelines.transform import build_models

    result = build_models(destination, select=select, work_dir=dbt_dir, verbose=verbose)
    print("\n".join(result.summary), flush=True)
    return 0 if result.ok else 1


def print_report(report: SyncReport) -> None:
    """The summary; a sync another run kept from starting is one line on stderr."""
    if isinstance(report, NotRunReport):
        print(f"scrapesync: {report.error}", file=sys.stderr, flush=True)
    else:
        print(format_report(report), flush=True)


def sync_exit_code(reports: Sequence[SyncReport]) -> int:
    """0: every sync ok; 1: a sync failed; 75 (EX_TEMPFAIL): the only failures are syncs that
    did not start because another run held their provider's lease (try again later)."""
    failed = [report for report in reports if not report.ok]
    if not failed:
        return 0
    return EXIT_LEASE_HELD if all(isinstance(r, NotRunReport) for r in failed) else 1


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
        destination=destination_for(args.destination, read_only=True),
        dataset_name="scrapesync_status",
    )
    try:
        statuses = status.collect(pipeline, args.max_age_hours, args.wait)
    except status.StatusUnavailable as exc:
        print(f"scrapesync status: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(orjson.dumps(status.as_json(statuses), option=orjson.OPT_INDENT_2).decode())
    else:
        print(status.render(statuses))
    return status.exit_code(statuses)


def cmd_report(args: argparse.Namespace) -> int:
    from scrapesync.pipelines.html_report import build_report
    from scrapesync.pipelines.runner import destination_for

    if not build_report(destination_for(args.destination), args.output):
        print(
            "scrapesync: no sync recorded in this destination yet (run `scrapesync sync`)",
            file=sys.stderr,
        )
        return 2
    print(f"report written to {Path(args.output).resolve()}")
    return 0


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
    sync_parser.add_argument(
        "--transform", action="store_true", help="build the dbt models after the syncs"
    )
    sync_parser.add_argument(
        "--shard",
        metavar="i/N",
        help="sync only the partitions worker i of N owns (0-based; one provider; default: "
        "`sources.<provider>.shard`, else all); see docs/scale-out.md",
    )
    sync_parser.set_defaults(func=cmd_sync)

    transform_parser = commands.add_parser(
        "transform", help="build the dbt models (scrape_health, ...) and run their tests"
    )
    transform_parser.add_argument(
        "--select", nargs="+", metavar="NODE", help="dbt node selection, passed to dbt build"
    )
    transform_parser.add_argument(
        "--destination", default="duckdb", help="dlt destination name (duckdb, postgres)"
    )
    transform_parser.add_argument(
        "--dbt-dir", help="keep dbt's profile, target/ and logs/ here (default: a temp dir)"
    )
    transform_parser.set_defaults(func=cmd_transform)

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
    status_parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for a DuckDB file a sync holds (default 30; then exit 75)",
    )
    status_parser.set_defaults(func=cmd_status)

    report_parser = commands.add_parser(
        "report", help="write one self-contained HTML page on sync and scrape health"
    )
    report_parser.add_argument("--output", required=True, help="the HTML file to write")
    report_parser.add_argument(
        "--destination", default="duckdb", help="dlt destination name (duckdb, postgres)"
    )
    report_parser.set_defaults(func=cmd_report)

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
        print_report(report)
        return report.ok

    def pipeline(self, provider: str, destination: str = "duckdb") -> dlt.Pipeline:
        return pipeline_for(provider, destination)

    @contextmanager
    def lease(self, provider: str, purpose: str, destination: str | None = None) -> Iterator[None]:
        """Hold `provider`'s run lease (pipelines/lease.py) for the block, e.g. a job submission
        that must not overlap a sync. Held by another run for the whole wait, or a destination
        that cannot be opened: one line on stderr and exit 75 or 1, never a traceback. The
        destination defaults to `[scrapesync] destination`, where the shared state lives."""
        if destination is None:
            destination = dlt.config.get("scrapesync.destination") or "duckdb"
        try:
            with run_lease(provider, destination, purpose):
                yield
        except LeaseHeldError as exc:
            print(f"scrapesync: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_LEASE_HELD) from exc
        except DestinationUnavailableError as exc:
            print(f"scrapesync: {provider}: destination unavailable: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc


class _QuietArrowHints(logging.Filter):
    """Drop dlt's warning that Arrow nullability differs from the declared hints.

    scrapesync declares its key columns non-nullable while Arrow infers them nullable; dlt keeps
    the declared hints (the right outcome) but warns once per page, drowning real warnings.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema with dlt schema" not in record.getMessage()


def _redacted_excepthook(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """An uncaught error's traceback, with every secret redacted, on stderr."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))


def main(argv: Sequence[str] | None = None) -> int:
    # every log line, printed error and traceback of this process is redacted from here on
    register_run_secrets()
    sys.excepthook = _redacted_excepthook
    args = build_parser().parse_args(argv)
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addFilter(_QuietArrowHints())
    if args.verbose:
        dlt_logger.setLevel(logging.INFO)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
