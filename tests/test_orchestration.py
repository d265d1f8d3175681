"""Orchestrators: the Dagster definitions materialise against the sandbox; the Airflow DAG's
structure is valid. Each is skipped cleanly when its optional extra is not installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.runner import pipeline_for
from sandbox.truth import mismatches


def configure(monkeypatch: pytest.MonkeyPatch, sandbox: Any, provider: str) -> None:
    options = sandbox.providers[provider].source_options(sandbox.url(provider))
    for key, value in options.items():
        name = f"SOURCES__{provider.upper()}__{key.upper()}"
        monkeypatch.setenv(name, value if isinstance(value, str) else json.dumps(value))


def test_given_dagster_when_a_providers_assets_materialise_then_the_destination_is_synced(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    pytest.importorskip("dagster_dlt", reason="the optional extra `dagster` is not installed")
    import dagster as dg

    from pipelines.dagster_defs import build_definitions

    sandbox = make_sandbox(reworkd={"groups": ["g-a", "g-b"], "records_per_group": 80})
    configure(monkeypatch, sandbox, "reworkd")
    defs = build_definitions()  # picks up every configured provider: only reworkd here
    assets = list(defs.assets or [])
    keys = {key.to_user_string() for a in assets for key in a.keys}  # type: ignore[union-attr]
    assert keys == {"dlt_reworkd_outputs_g-a", "dlt_reworkd_outputs_g-b"}

    for _ in range(2):
        result = dg.materialize(assets, instance=dg.DagsterInstance.ephemeral())
        assert result.success
        problems = mismatches(pipeline_for("reworkd"), "reworkd", sandbox.providers["reworkd"])
        assert problems == [], problems
        sandbox.advance()
    materialized = result.get_asset_materialization_events()
    assert {event.asset_key.to_user_string() for event in materialized} == keys


def test_given_dagster_when_the_sync_fails_then_the_run_fails_with_the_providers_error(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    pytest.importorskip("dagster_dlt", reason="the optional extra `dagster` is not installed")
    import dagster as dg

    from pipelines.dagster_defs import build_definitions

    sandbox = make_sandbox(reworkd={"groups": ["g-a"], "records_per_group": 10})
    configure(monkeypatch, sandbox, "reworkd")
    monkeypatch.setenv("SOURCES__REWORKD__API_KEY", "not-the-key")

    result = dg.materialize(
        list(build_definitions(["reworkd"]).assets or []),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure)
    assert "reworkd: GET /v1/outputs/g-a returned HTTP 401" in str(failure.event_specific_data)


def test_given_airflow_when_the_dag_is_parsed_then_each_provider_has_its_task_group(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    pytest.importorskip("airflow", reason="the optional extra `airflow` is not installed")
    from airflow.models.dagbag import DagBag

    sandbox = make_sandbox()
    for provider in ("reworkd", "scrapewise"):
        configure(monkeypatch, sandbox, provider)
    dag_file = Path(__file__).resolve().parent.parent / "pipelines" / "airflow_dag.py"

    bag = DagBag(dag_folder=str(dag_file))

    assert bag.import_errors == {}
    dag = bag.dags.get("scrapesync")
    assert dag is not None
    assert set(dag.task_group.children) == {"reworkd", "scrapewise"}
    for provider in ("reworkd", "scrapewise"):
        group = dag.task_group.children[provider]
        post_load = f"{provider}.{provider}_post_load"
        (run_task,) = set(group.children) - {post_load}
        assert post_load in group.children
        assert dag.get_task(post_load).upstream_task_ids == {run_task}
    assert dag.max_active_runs == 1
