"""Scale-out: one provider's partitions split across parallel Dagster step processes.

    pip install -e ".[dagster]"            # dagster, dagster-dlt, dagster-postgres
    export DAGSTER_HOME=/srv/dagster       # its dagster.yaml: PostgreSQL storage, run queue
    dagster-daemon run -m scrapesync.pipelines.dagster_scaleout
    dagster job launch -m scrapesync.pipelines.dagster_scaleout -j <provider>_scaleout \\
        --config-json '{"ops": {"plan_<provider>_shards": {"config": {"shards": 4}}}}'

One job per provider whose source takes a `shard` argument (`<provider>_scaleout`): an op
plans N shards (run config `shards`), one `sync_<provider>_shard` step per shard runs
scrapesync's own `sync` of shard i/N (pipelines/runner.py), and a last step sums their
reports. The multiprocess executor runs each step in a process of its own, up to
`max_concurrent` at once (run config `execution.config.max_concurrent`; `run_config()` sets it
to N). Every shard loads the same dataset in the same destination (default `postgres`,
configured the dlt way): the runner gives each shard its own run lease and working dir and lets
shards take turns only for the load (`runner.load_lock`).

Why a dynamic graph, not a partitioned asset: a static partition set fixes N when the code
location loads, and Dagster runs each partition as a run of its own (a backfill); here N is a
run's config, and one run holds every shard: the run fails when a shard fails, and Dagster's
re-execution from failure runs the failed shards again. A shard that fails (its sync's
error, or its process killed) fails the run; what it did not load is read again by the next
run, whatever its N (docs/scale-out.md).

Runs carry the tag `scrapesync/provider`: a `tag_concurrency_limits` entry on it in the run
queue keeps two scale-out runs of a provider (e.g. N=3 and N=2, whose shards overlap) from
running at once.
"""

# no `from __future__ import annotations`: Dagster checks the `context` annotation's type
import inspect
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg

from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import sync
from scrapesync.sources.common.partitions import MAX_SHARDS

PROVIDER_TAG = "scrapesync/provider"
DEFAULT_SHARDS = 2


class ShardPlan(dg.Config):
    """How a run splits its provider: `shards` workers, loading into `destination`."""

    shards: int = DEFAULT_SHARDS
    destination: str = "postgres"


def shardable(provider: registry.Provider) -> bool:
    """Whether the provider's source splits its partitions into shards (`shard="i/N"`)."""
    return "shard" in inspect.signature(provider.source).parameters


def _plan_op(provider: str) -> dg.OpDefinition:
    @dg.op(name=f"plan_{provider}_shards", out=dg.DynamicOut(dict))
    def plan(context: dg.OpExecutionContext, config: ShardPlan) -> Iterator[dg.DynamicOutput]:
        if not 1 <= config.shards <= MAX_SHARDS:
            raise dg.Failure(description=f"shards must be 1..{MAX_SHARDS}, got {config.shards}")
        context.log.info(f"{provider}: {config.shards} shards into {config.destination}")
        for index in range(config.shards):
            task = {"shard": f"{index}/{config.shards}", "destination": config.destination}
            yield dg.DynamicOutput(task, mapping_key=f"shard_{index}_of_{config.shards}")

    return plan


def _sync_op(provider: str) -> dg.OpDefinition:
    @dg.op(name=f"sync_{provider}_shard")
    def sync_shard(context: dg.OpExecutionContext, task: dict) -> dict:
        shard = str(task["shard"])
        # the step's own process (multiprocess executor): named so an operator can find it
        context.log.info(f"{provider} shard {shard}: syncing in step process pid {os.getpid()}")
        report = sync(registry.get(provider), destination=task["destination"], shard=shard)
        if not report.ok:
            raise dg.Failure(description=report.error or f"{provider} shard {shard}: failed")
        summary = {
            "shard": shard,
            "seconds": round(report.seconds, 1),
            "requests": report.stats.requests,
            "written": {t.table: t.inserted + t.updated for t in report.tables},
        }
        context.add_output_metadata({k: v for k, v in summary.items() if k != "written"})
        return summary

    return sync_shard


def _summary_op(provider: str) -> dg.OpDefinition:
    @dg.op(name=f"summarize_{provider}_shards")
    def summarize(context: dg.OpExecutionContext, reports: list[dict]) -> dict:
        written: dict[str, int] = {}
        for report in reports:
            for table, rows in report["written"].items():
                written[table] = written.get(table, 0) + rows
        total = {
            "shards": len(reports),
            "requests": sum(r["requests"] for r in reports),
            "written": written,
        }
        context.log.info(f"{provider}: {total}")
        return total

    return summarize


def scaleout_job(provider: str) -> dg.JobDefinition:
    """The scale-out job of `provider` (its source must take `shard`)."""
    plan, sync_shard, summarize = _plan_op(provider), _sync_op(provider), _summary_op(provider)

    @dg.job(
        name=f"{provider}_scaleout",
        executor_def=dg.multiprocess_executor,
        tags={PROVIDER_TAG: provider},
        description=f"Sync {provider} in N shards, one step process each (docs/scale-out.md)",
    )
    def scaleout() -> None:
        summarize(plan().map(sync_shard).collect())

    return scaleout


def run_config(
    provider: str,
    shards: int,
    destination: str | None = None,
    max_concurrent: int | None = None,
) -> dict[str, Any]:
    """Run config of `<provider>_scaleout`: N shards, at most `max_concurrent` (default: N)
    step processes at once."""
    plan: dict[str, Any] = {"shards": shards}
    if destination is not None:
        plan["destination"] = destination
    return {
        "ops": {f"plan_{provider}_shards": {"config": plan}},
        "execution": {"config": {"max_concurrent": max_concurrent or shards}},
    }


def build_jobs(providers: list[str] | None = None) -> list[dg.JobDefinition]:
    """Scale-out jobs of `providers` (default: every provider that can be sharded)."""
    if providers is None:
        providers = [p.name for p in registry.PROVIDERS.values() if shardable(p)]
    return [scaleout_job(name) for name in providers]


defs = dg.Definitions(jobs=build_jobs())
