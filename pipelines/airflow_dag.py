"""Airflow DAG `scrapesync`: one task group per configured provider, built with dlt's
`PipelineTasksGroup`.

    pip install -e ".[airflow]"      # then put this file (or an import of it) in dags/

Each group runs the provider's source through dlt (`decompose="none"`: one task, because a
provider's resources share one pipeline state) and then its after-load SQL. The source is
built inside the task, so the scheduler parses the DAG without the providers' secrets; the
workers resolve them the dlt way (env `SOURCES__<PROVIDER>__...` or `.dlt/secrets.toml`).

Crash safety under Airflow: `PipelineTasksGroup` gives every task a fresh, wiped working
directory, so a killed task leaves no local package behind; the next run restores the state
from the destination, where it is committed only with a fully loaded package
(docs/dlt-behaviours.md, "Pipeline state"), and re-reads what was not loaded. Merge makes the
re-read idempotent. Retries cover the load step (`retry_pipeline_steps=("load",)`). Everything
else a later run needs is in the destination too (a provider's job ledger, the webhook
inbox), so any worker continues where the last one stopped.

Each task holds what `scrapesync sync` holds (`pipelines/runner.py`): the provider's run lease
(`pipelines/lease.py`), so a DAG run never overlaps another run of the provider (a CLI sync, a
job submission, a Dagster materialisation), and a DuckDB destination file
(`warehouse.hold_destination`), waited for with bounded retries while another process has it.
The dlt task runs extract, normalize and load in one `pipeline.run`, so the lease spans all
three; both are held for the whole task, because dlt's task offers no hook between the steps
(the runner lets go of the file while it reads the API). The after-load SQL is a task of its own,
maybe in another process: a lease lives only as long as its holder's heartbeat, so that task
takes the lease again. Another run slipping in between is harmless: the after-load steps are
idempotent (they act on what is loaded and acknowledged in the destination).
tests/test_orchestration.py runs the DAG twice with `dag.test()` and checks that the second run
resumes incrementally; submits jobs in one task and collects them in a later run on a wiped
dir; and has a DAG run read and acknowledge webhooks a running listener stored.

dlt's Airflow secrets provider also looks every config key up as an Airflow Variable. With the
secrets in the environment or `.dlt/secrets.toml`, PROVIDERS__ENABLE_AIRFLOW_SECRETS=false saves
those calls (one provider's sync task under `dag.test()`: 25 s with them, 5 s without).

The schedule is hourly: well inside the shortest result retention of the providers (4 h; see
each provider's `retention_hours` and the README's scheduling note); `[scrapesync] schedule`
(env SCRAPESYNC__SCHEDULE) overrides it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from dlt.common.known_env import DLT_DATA_DIR
from dlt.helpers.airflow_helper import PipelineTasksGroup
from dlt.sources import DltSource

from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import file_format, pipeline_for, run_lease, run_post_load
from scrapesync.pipelines.warehouse import hold_destination

DEFAULT_SCHEDULE = "@hourly"


def _setting(key: str, default: Any) -> Any:
    value: Any = dlt.config.get(f"scrapesync.{key}")
    return default if value is None else value


def _source_factory(provider: registry.Provider) -> Callable[[], DltSource]:
    # a plain callable (not a resource) is evaluated by dlt at task run time
    return lambda: provider.source()  # noqa: PLW0108 (a call at run time, not a reference)


@contextmanager
def held(name: str, destination: Any) -> Iterator[None]:
    """The provider's run lease, then its DuckDB file (no-op elsewhere), for one task.

    Raises `LeaseHeldError` (one line naming the holder) or `DestinationUnavailableError`: the
    task fails and Airflow's `retries` run it again later.
    """
    with run_lease(name, destination), tempfile.TemporaryDirectory(prefix="scrapesync-") as scratch:
        # a pipeline object of its own: the task's working dir is dlt's to create and wipe
        probe = pipeline_for(name, destination, pipelines_dir=scratch)
        with hold_destination(probe):
            yield


def guarded(name: str, destination: Any, task: Callable[[], Any]) -> Callable[[], Any]:
    """`task` (a dlt task callable) run inside `held`.

    No parameters: Airflow passes its context to a callable that takes `**kwargs`, and dlt's
    callable takes none.
    """

    def run() -> Any:
        with held(name, destination):
            return task()

    return run


def _post_load(name: str, destination: str) -> None:
    provider = registry.get(name)
    # a throwaway working dir, like the run task's: the schema comes from the destination
    with held(name, destination), tempfile.TemporaryDirectory(prefix="scrapesync-") as workdir:
        pipeline = pipeline_for(name, destination, pipelines_dir=workdir)
        pipeline.sync_destination()
        run_post_load(pipeline, provider)


def _drop_parse_time_data(data_dir: Path) -> None:
    """Removes the local dlt data made while parsing: each task drops it and starts afresh.

    `dlt.pipeline()` writes a working dir (state, schemas) under the group's random data dir,
    and the DAG processor re-parses this file every 30 s: kept, they pile up in the temp dir.
    Only a `dlt_<random>` dir directly in the temp dir is removed, never a configured one.
    """
    if data_dir.parent == Path(tempfile.gettempdir()) and data_dir.name.startswith("dlt_"):
        shutil.rmtree(data_dir, ignore_errors=True)


def add_provider(provider: registry.Provider, destination: str) -> None:
    """The provider's task group: the dlt run, then its after-load SQL."""
    group = PipelineTasksGroup(
        provider.name,
        use_data_folder=False,
        wipe_local_data=True,
        retry_pipeline_steps=("load",),
    )
    # the group has just pointed DLT_DATA_DIR at a fresh dlt_<random> dir in the temp dir
    data_dir = Path(os.environ[DLT_DATA_DIR])
    # created after the group: it points dlt at a fresh per-task data dir (dlt's requirement)
    pipeline = pipeline_for(provider.name, destination)
    runs = group.add_run(
        pipeline,
        _source_factory(provider),
        decompose="none",
        loader_file_format=file_format(pipeline),
    )
    # the file the parse resolved (e.g. ./scrapesync.duckdb) is the one the task loads into
    for task in runs:
        task.python_callable = guarded(provider.name, pipeline.destination, task.python_callable)
    if provider.post_load is not None:
        with group:
            upkeep = PythonOperator(
                task_id=f"{provider.name}_post_load",
                python_callable=_post_load,
                op_args=[provider.name, destination],
            )
        runs[-1] >> upkeep
    _drop_parse_time_data(data_dir)


def build_dag(providers: list[str] | None = None, destination: str | None = None) -> DAG:
    """The `scrapesync` DAG over `providers` (default: every configured one)."""
    names = providers or [p.name for p in registry.PROVIDERS.values() if p.is_configured()]
    target = destination or str(_setting("destination", "duckdb"))
    with DAG(
        dag_id="scrapesync",
        schedule=str(_setting("schedule", DEFAULT_SCHEDULE)),
        start_date=datetime(2025, 1, 1),
        catchup=False,
        # the lease would serialise overlapping runs anyway; one at a time queues none
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
        tags=["scrapesync", "dlt"],
    ) as dag:
        for name in names:
            add_provider(registry.get(name), target)
    return dag


dag = build_dag()
