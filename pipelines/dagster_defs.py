"""Dagster definitions: every configured provider's dlt resources as assets.

    pip install -e ".[dagster]"
    dagster dev -m pipelines.dagster_defs

The asset specs come from `dagster-dlt` (one asset per dlt resource, grouped per provider),
but a materialisation runs scrapesync's own `sync`, not a bare `pipeline.run`: it first
finishes the load package a killed run left (which dlt alone would load instead of syncing new
data), loads Parquet where the destination takes it and runs the provider's after-load SQL.
All of a provider's resources share one pipeline state and one load, so materialising any of
them syncs the whole provider. A failed sync fails the run with the runner's error text.

Being `sync`, a materialisation holds what `scrapesync sync` holds: the provider's run lease
(`pipelines/lease.py`; another run of the provider, from any orchestrator or the command line,
waits, then fails with one line naming the holder) and a DuckDB destination file only while it
uses it (waited for with bounded retries). Everything a later run needs (dlt state, a
provider's job ledger, the webhook inbox) is in the destination, so a run on a fresh worker with
an empty dlt data dir continues where the last one stopped (tests/test_orchestration.py submits
jobs in one run and collects them in later ones, each on a new, wiped data dir).

A provider is included when its settings resolve (`Provider.is_configured`), the same rule
`scrapesync sync` uses; the destination is `[scrapesync] destination` in config.toml (env
SCRAPESYNC__DESTINATION, default duckdb), configured further the dlt way.

Included providers that split into shards also get their scale-out job (`<provider>_scaleout`,
pipelines/dagster_scaleout.py: N shard steps in parallel processes; docs/scale-out.md).
"""

# no `from __future__ import annotations`: Dagster checks the `context` annotation's type
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import dlt
from dagster import AssetExecutionContext
from dagster_dlt import dlt_assets

from scrapesync.pipelines import registry
from scrapesync.pipelines.dagster_scaleout import build_jobs, shardable
from scrapesync.pipelines.runner import pipeline_for, sync


def _destination() -> str:
    return str(dlt.config.get("scrapesync.destination") or "duckdb")


def provider_assets(provider: registry.Provider, destination: str) -> dg.AssetsDefinition:
    """One multi-asset per provider; materialising it runs one scrapesync sync."""
    pipeline = pipeline_for(provider.name, destination)

    @dlt_assets(
        dlt_source=provider.source(),
        dlt_pipeline=pipeline,
        name=f"scrapesync_{provider.name}",
        group_name=provider.name,
    )
    def assets(context: AssetExecutionContext) -> Iterator[dg.MaterializeResult[Any]]:
        report = sync(provider, destination=destination)
        if not report.ok:
            raise dg.Failure(description=report.error or f"{provider.name}: sync failed")
        # one sync loads every resource: each asset carries the provider's table counts
        metadata: dict[str, Any] = {"seconds": report.seconds, "requests": report.stats.requests}
        for table in report.tables:
            metadata[f"{table.table} rows"] = table.total
            metadata[f"{table.table} inserted/updated/deleted"] = (
                f"{table.inserted}/{table.updated}/{table.deleted}"
            )
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)

    return assets


def build_definitions(
    providers: Sequence[str] | None = None, destination: str | None = None
) -> dg.Definitions:
    """Definitions for `providers` (default: every configured one)."""
    names = providers or [p.name for p in registry.PROVIDERS.values() if p.is_configured()]
    target = destination or _destination()
    return dg.Definitions(
        assets=[provider_assets(registry.get(n), target) for n in names],
        jobs=build_jobs([n for n in names if shardable(registry.get(n))]),
    )


defs = build_definitions()
