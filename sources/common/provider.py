"""What a provider package tells the shared layers about itself: one `Provider` description.

Each provider package (`scrapesync.sources.<name>`) exports `PROVIDER`, an instance of
`Provider`. The runner, the unified model, the completeness checks, `status`, the command line
and the webhook intake loop over these descriptions and name no provider; the registry
(`scrapesync.pipelines.registry`) finds them. A provider's tables and primary keys are not
listed here: they are read from its resources' own hints (the dlt schema), declared once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import dlt
from dlt.sources import DltSource

from scrapesync.sources.common.inbox import Handler


class Host(Protocol):
    """What the `scrapesync` command line offers a provider's actions (kept below providers so
    that a provider package never imports the pipelines layer)."""

    def sync(self, provider: str) -> bool:
        """Sync `provider` as `scrapesync sync <provider>` does, print its report; True if ok."""
        ...

    def pipeline(self, provider: str, destination: str = "duckdb") -> dlt.Pipeline:
        """The provider's dlt pipeline (to read or fix rows in its destination)."""
        ...

    def lease(
        self, provider: str, purpose: str, destination: str | None = None
    ) -> AbstractContextManager[None]:
        """Hold the provider's run lease for a block that must not overlap a sync (e.g. a job
        submission); held elsewhere for the whole wait: one line and exit 75."""
        ...


# adds `scrapesync <provider> ...` commands; a command function reads the `Host` as `args.host`
Actions = Callable[[argparse._SubParsersAction], None]


@dataclass(frozen=True)
class RunMapping:
    """How one provider table becomes `scrapesync.scrape_runs` rows (its column names).

    Attributes:
        table: the provider table; `key` is its one-column primary key, the `run_id`.
        parent_id: the group / scraper / datasource / batch column, or None.
        state: the raw state column; `states` maps its values to the normalised ones
            (`pending | running | succeeded | failed | cancelled | expired`).
        started_at / finished_at: timestamp columns (None: unknown).
        items_ok / items_failed: count columns (None: the provider reports none).
        deleted: boolean soft-delete column, or None.
        source_ref: URL template of the provider's record, `{column}` placeholders.
        finished_states: raw states in which `finished_at` is final; elsewhere it is NULL (for
            providers whose "finished" column is really "last updated").
    """

    table: str
    key: str
    parent_id: str | None
    state: str
    states: Mapping[str, str]
    started_at: str | None
    finished_at: str | None
    items_ok: str | None
    items_failed: str | None
    deleted: str | None
    source_ref: str
    finished_states: frozenset[str] | None = field(default=None)


@dataclass(frozen=True)
class TotalCheck:
    """A total the provider states on a parent row, against the child rows that landed.

    Attributes:
        name: identifies the check in `scrapesync.sync_checks`.
        parent / key / expected: parent table, its key, and its column that states the total.
        child / fk: child table and its column that references `key`.
        where: SQL condition on the parent (`p.`) rows whose total is final.
        also: extra join condition (`c.` child, `p.` parent), e.g. the same product.
    """

    name: str
    parent: str
    key: str
    expected: str
    child: str
    fk: str
    where: str
    also: str = ""


@dataclass(frozen=True)
class Provider:
    """One provider as the shared layers see it.

    Attributes:
        name: provider name = dlt config section `sources.<name>` = dataset name.
        source: the `@dlt.source` function; the runner calls it with `stats=RequestStats()`.
        required: config keys that must be set for the provider to count as configured.
        post_load: SQL upkeep run after each load (None when there is none).
        actions: adds the provider's commands (`scrapesync <name> ...`) to the command line.
        runs: how its run/job tables map to `scrape_runs`.
        checks: stated totals checked against the rows that landed (`sync_checks`).
        freshness: table -> the column that dates a record (the lag `status` reports).
        retention_hours: table -> how long the provider keeps a finished job's results.
        webhook: the `scrapesync listen` handler for `POST /<name>/...`, if it pushes.
        sample_query: a query over its tables the demo shows (dataset-qualified).
    """

    name: str
    source: Callable[..., DltSource]
    required: tuple[str, ...] = ("api_key",)
    post_load: Callable[[dlt.Pipeline], Any] | None = None
    actions: Actions | None = None
    runs: tuple[RunMapping, ...] = ()
    checks: tuple[TotalCheck, ...] = ()
    freshness: Mapping[str, str] = field(default_factory=dict)
    retention_hours: Mapping[str, float] = field(default_factory=dict)
    webhook: Handler | None = None
    sample_query: str | None = None

    def is_configured(self) -> bool:
        """True when every required setting resolves (config files or env vars)."""
        return all(setting(f"sources.{self.name}.{key}") is not None for key in self.required)

    def env_hint(self) -> str:
        """The env vars that configure it, e.g. for a "nothing configured" message."""
        return " and ".join(f"SOURCES__{self.name.upper()}__{k.upper()}" for k in self.required)


def setting(key: str) -> Any:
    """A dlt secret, else a dlt config value (None when neither is set)."""
    value: Any = dlt.secrets.get(key)
    return value if value is not None else dlt.config.get(key)


def merge_tables(schema: Any) -> dict[str, tuple[str, ...]]:
    """The provider's keyed tables and their primary keys, from its dlt schema (the resources'
    own hints): every data table with a primary key, in schema order."""
    tables: dict[str, tuple[str, ...]] = {}
    for table in schema.data_tables(seen_data_only=True):
        columns = table.get("columns", {})
        key = tuple(c for c, hints in columns.items() if hints.get("primary_key"))
        if key:
            tables[table["name"]] = key
    return tables
