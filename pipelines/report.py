"""What a sync did: the report the runner returns and the CLI, metrics and tests read."""

from __future__ import annotations

from dataclasses import dataclass, field

from scrapesync.sources.common.stats import RequestStats


@dataclass
class TableReport:
    """What one sync did to one table (rows)."""

    table: str
    inserted: int
    updated: int
    deleted: int
    total: int


@dataclass
class SyncReport:
    """The outcome of one provider's sync."""

    provider: str
    ok: bool = True
    seconds: float = 0.0
    stats: RequestStats = field(default_factory=RequestStats)
    tables: list[TableReport] = field(default_factory=list)
    recovered_packages: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def format_report(report: SyncReport) -> str:
    """A short, aligned summary of one provider's sync."""
    status = "ok" if report.ok else "FAILED"
    stats = report.stats
    lines = [
        f"{report.provider}: {status} in {report.seconds:.1f} s, {stats.requests} requests"
        f" ({stats.retries} retried, {stats.throttled} throttled)"
    ]
    if report.recovered_packages:
        lines.append(
            f"  finished {report.recovered_packages} load package(s) of an interrupted run"
        )
    if report.tables:
        lines.append(f"  {'table':<24}{'inserted':>10}{'updated':>10}{'deleted':>10}{'rows':>10}")
        lines.extend(
            f"  {t.table:<24}{t.inserted:>10}{t.updated:>10}{t.deleted:>10}{t.total:>10}"
            for t in report.tables
        )
    if report.error:
        lines.append("  " + report.error.replace("\n", "\n  "))
    lines.extend(f"  warning: {warning}" for warning in report.warnings)
    return "\n".join(lines)
