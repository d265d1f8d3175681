"""Orchestrators: the Dagster definitions materialise against the sandbox; the Airflow DAG
parses into its task groups and its runs sync the sandbox.

Each orchestrator is an optional extra (`dagster`, `airflow`) and its tests skip cleanly
without it, unless SCRAPESYNC_REQUIRE_ORCHESTRATORS=1 (CI, which installs both into a second
venv) makes them fail instead.

Airflow runs in a child interpreter (`airflow_child`) with its own AIRFLOW_HOME, DAG folder,
SQLite metadata DB and temp dir: Airflow reads its home once per process and configures
logging and its ORM globally, and dlt's `PipelineTasksGroup` rewrites the process's dlt
environment variables. The child is also how Airflow meets the file: a fresh interpreter
importing it from the DAG folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox.truth import mismatches

ROOT = Path(__file__).resolve().parent.parent
DAG_FILE = ROOT / "pipelines" / "airflow_dag.py"
# Airflow's first start (DB creation, the in-process execution API of `dag.test()`) takes
# 30-60 s on a loaded 2-core machine
CHILD_TIMEOUT = 240


def require(module: str, extra: str) -> None:
    """Skip without the optional extra; fail instead where CI requires the orchestrators.

    Looked up, not imported: Airflow is only ever imported by the child interpreter.
    """
    if importlib.util.find_spec(module) is None:
        reason = f"the optional extra `{extra}` is not installed (no module {module})"
        if os.environ.get("SCRAPESYNC_REQUIRE_ORCHESTRATORS") == "1":
            pytest.fail(f"SCRAPESYNC_REQUIRE_ORCHESTRATORS=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def no_airflow_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps Airflow out of this process, where it is installed.

    dlt's Airflow secrets provider imports Airflow on dlt's first config lookup and asks it for
    a Variable: that doubled the Dagster materialisation test (25 s vs 13 s). dlt builds its
    providers once per process, possibly before this test; an Airflow imported then finds its
    home in a test's dir instead of creating ~/airflow.
    """
    monkeypatch.setenv("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))


def configure(monkeypatch: pytest.MonkeyPatch, sandbox: Any, provider: str) -> None:
    options = sandbox.providers[provider].source_options(sandbox.url(provider))
    for key, value in options.items():
        name = f"SOURCES__{provider.upper()}__{key.upper()}"
        monkeypatch.setenv(name, value if isinstance(value, str) else json.dumps(value))


def test_given_dagster_when_a_providers_assets_materialise_then_the_destination_is_synced(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("dagster_dlt", "dagster")
    import dagster as dg

    from scrapesync.pipelines.dagster_defs import build_definitions

    sandbox = make_sandbox(reworkd={"groups": ["g-a", "g-b"], "records_per_group": 80})
    configure(monkeypatch, sandbox, "reworkd")
    defs = build_definitions()  # picks up every configured provider: only reworkd here
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    keys = {key.to_user_string() for a in assets for key in a.keys}
    assert keys == {"dlt_reworkd_outputs_g-a", "dlt_reworkd_outputs_g-b"}

    for _ in range(2):
        result = dg.materialize(assets, instance=dg.DagsterInstance.ephemeral())
        assert result.success
        problems = mismatches(pipeline_for("reworkd"), "reworkd", sandbox.providers["reworkd"])
        assert problems == [], problems
        sandbox.advance()
    materialized = result.get_asset_materialization_events()
    assert {e.asset_key.to_user_string() for e in materialized if e.asset_key} == keys


def test_given_dagster_when_the_sync_fails_then_the_run_fails_with_the_providers_error(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("dagster_dlt", "dagster")
    import dagster as dg

    from scrapesync.pipelines.dagster_defs import build_definitions

    sandbox = make_sandbox(reworkd={"groups": ["g-a"], "records_per_group": 10})
    configure(monkeypatch, sandbox, "reworkd")
    monkeypatch.setenv("SOURCES__REWORKD__API_KEY", "not-the-key")

    assets = build_definitions(["reworkd"]).assets or []
    result = dg.materialize(
        [a for a in assets if isinstance(a, dg.AssetsDefinition)],
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure)
    assert "reworkd: GET /v1/outputs/g-a returned HTTP 401" in str(failure.event_specific_data)


def airflow_child(mode: str, result_file: str) -> None:
    """Runs in the child interpreter (see `run_airflow`): parse the DAG folder, in mode `run`
    also run the DAG once with `dag.test()`; the findings go to `result_file` as JSON."""
    from airflow.dag_processing.dagbag import DagBag

    result: dict[str, Any] = {}
    if mode == "run":
        from airflow.utils import db

        db.initdb()  # a SQLite file in AIRFLOW_HOME; `dag.test()` records its run there
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    result["import_errors"] = {name: str(error) for name, error in bag.import_errors.items()}
    dag = bag.dags.get("scrapesync")
    if dag is not None:
        result["max_active_runs"] = dag.max_active_runs
        result["groups"] = {
            # a top-level task, not a group, has no children: an empty entry the test rejects
            name: {
                task_id: sorted(dag.get_task(task_id).upstream_task_ids)
                for task_id in getattr(node, "children", {})
            }
            for name, node in dag.task_group.children.items()
        }
        if mode == "run":
            run = dag.test()
            result["state"] = str(run.state)
            result["tasks"] = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    Path(result_file).write_text(json.dumps(result))


def run_airflow(mode: str, workdir: Path) -> dict[str, Any]:
    """`airflow_child(mode)` in a fresh interpreter, deployed the README's way: the DAG file
    copied into the DAG folder of an AIRFLOW_HOME in `workdir`. Its temp dir is
    `workdir/tmp`, so what a parse or a run leaves behind can be checked."""
    home, dags, tmp = workdir / "airflow", workdir / "dags", workdir / "tmp"
    for folder in (dags, tmp):
        folder.mkdir(exist_ok=True)
    shutil.copy(DAG_FILE, dags)
    result_file = workdir / f"airflow-{mode}.json"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "TMPDIR": str(tmp),
        "PYTHONPATH": str(Path(__file__).resolve().parent),
        # dlt's Airflow secrets provider looks each config key up as an Airflow Variable,
        # through the execution API: the sync task took 25 s instead of 5 s, and the test's
        # config is in the environment anyway
        "PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false",
    }
    code = "import sys; from test_orchestration import airflow_child; airflow_child(*sys.argv[1:])"
    try:
        child = subprocess.run(
            [sys.executable, "-c", code, mode, str(result_file)],
            check=False,
            cwd=workdir,  # the default DuckDB destination is ./scrapesync.duckdb
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as timeout:
        # e.g. a failed task: `dag.test()` waits out the DAG's 5 min retry delay
        output = (timeout.stderr or b"")[-5000:]
        pytest.fail(f"Airflow ({mode}) still running after {CHILD_TIMEOUT} s: {output!r}")
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-5000:]
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def test_given_airflow_when_the_dag_is_parsed_then_each_provider_has_its_task_group(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("airflow", "airflow")
    sandbox = make_sandbox()
    for provider in ("reworkd", "scrapewise"):
        configure(monkeypatch, sandbox, provider)

    result = run_airflow("parse", isolated)

    assert result["import_errors"] == {}
    assert result["max_active_runs"] == 1
    groups = result["groups"]
    assert set(groups) == {"reworkd", "scrapewise"}
    for provider, tasks in groups.items():
        post_load = f"{provider}.{provider}_post_load"
        (run_task,) = set(tasks) - {post_load}
        assert tasks == {run_task: [], post_load: [run_task]}
    # parsing (every 30 s in the DAG processor) leaves no dlt working dirs behind
    assert list((isolated / "tmp").iterdir()) == []


def test_given_airflow_when_the_dag_runs_then_the_destination_is_synced_each_run(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("airflow", "airflow")
    sandbox = make_sandbox(reworkd={"groups": ["g-a", "g-b"], "records_per_group": 40})
    configure(monkeypatch, sandbox, "reworkd")

    # two runs, each in a fresh interpreter with a fresh dlt working dir, as Airflow's workers
    # run them: the second resumes from the state the first stored in the destination
    for run in ("first", "second"):
        result = run_airflow("run", isolated)
        assert result["state"] == "success", result
        assert result["tasks"] == {
            "reworkd.scrapesync_reworkd": "success",
            "reworkd.reworkd_post_load": "success",
        }
        # this process never ran the pipeline: its schema comes from the destination
        pipeline = pipeline_for("reworkd")
        pipeline.sync_destination()
        problems = mismatches(pipeline, "reworkd", sandbox.providers["reworkd"])
        assert problems == [], (run, problems)
        if run == "first":
            sandbox.advance()
            sandbox.requests.clear()
    # incremental: every page request of the second run carries its group's watermark
    reads = sandbox.requests.entries("reworkd", "/v1/outputs/")
    assert reads
    assert all("created_after" in r.query for r in reads)
    # the run tasks wipe their working dirs (empty directories are dlt's own leftovers)
    assert [p for p in (isolated / "tmp").rglob("*") if p.is_file()] == []
