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
