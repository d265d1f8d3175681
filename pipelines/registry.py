"""The providers scrapesync can sync: their source factories, tables and after-load steps.

A provider is added by one `Provider` row here; the CLI, the demo and the runner read this
table and nothing else.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.sources import DltSource

from scrapesync.pipelines import opencx_cli, outscraper_cli, oxylabs_cli, scrapewise_cli
from scrapesync.sources import opencx, outscraper, oxylabs, reworkd, scrapewise


@dataclass(frozen=True)
class Provider:
    """One provider as the runner sees it.

    Attributes:
        name: provider name = dlt config section `sources.<name>` = dataset name.
        source: the `@dlt.source` function; called with `stats=RequestStats()` only.
        tables: the merge tables it loads, with their primary keys (reported after a sync).
        required: config keys that must be set for the provider to count as configured.
        post_load: SQL upkeep run after each load (None when there is none).
        cli: adds the provider's action commands (`scrapesync <name> ...`) to the CLI.
    """

    name: str
    source: Callable[..., DltSource]
    tables: dict[str, tuple[str, ...]]
    required: tuple[str, ...] = ("api_key",)
    post_load: Callable[[dlt.Pipeline], Any] | None = None
    cli: Callable[[argparse._SubParsersAction], None] | None = None

    def is_configured(self) -> bool:
        """True when every required setting resolves (config files or env vars)."""
        return all(_setting(f"sources.{self.name}.{key}") is not None for key in self.required)


def _setting(key: str) -> Any:
    value: Any = dlt.secrets.get(key)
    return value if value is not None else dlt.config.get(key)


PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        Provider(
            name="reworkd",
            source=reworkd.reworkd_source,
            tables={
                "outputs": ("group_id", "key_hash"),
                "outputs__files": ("group_id", "key_hash", "file_index"),
                "outputs_history": ("group_id", "key_hash", "_version"),
            },
            required=("api_key", "group_ids"),
            post_load=reworkd.post_load,
        ),
        Provider(
            name="outscraper",
            source=outscraper.outscraper_source,
            tables={
                "tasks": ("id",),
                "removed_tasks": ("task_id",),
                "task_results": ("task_id", "file_index", "row_number"),
                "requests": ("id",),
                "request_results": ("request_id", "query_index", "row_index"),
            },
            post_load=outscraper.post_load,
            cli=outscraper_cli.add_commands,
        ),
        Provider(
            name="opencx",
            source=opencx.opencx_source,
            tables={"datasources": ("id",), "crawl_jobs": ("id",)},
            post_load=opencx.post_load,
            cli=opencx_cli.add_commands,
        ),
        Provider(
            name="scrapewise",
            source=scrapewise.scrapewise_source,
            tables={
                "jobs": ("id",),
                "job_errors": ("job_id", "url"),
                "rows": ("job_id", "row_index"),
                "scrapers": ("id",),
                "enriched_rows": ("group_id", "row_index"),
            },
            post_load=scrapewise.post_load,
            cli=scrapewise_cli.add_commands,
        ),
        Provider(
            name="oxylabs",
            source=oxylabs.oxylabs_source,
            tables={
                "jobs": ("id",),
                "submissions": ("batch_id",),
                "results": ("job_id", "page"),
                "schedules": ("schedule_id",),
                "schedule_runs": ("schedule_id", "run_id", "job_id"),
            },
            required=("username", "password"),
            post_load=oxylabs.post_load,
            cli=oxylabs_cli.register,
        ),
    )
}


def get(name: str) -> Provider:
    """The provider called `name`, or a ValueError that lists the known ones."""
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider {name!r}; scrapesync knows: {known}") from None
