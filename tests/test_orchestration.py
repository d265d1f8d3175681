"""Orchestrators: the Dagster definitions materialise against the sandbox; the Airflow DAG
parses into its task groups and its runs sync the sandbox.

Each orchestrator is an optional extra (`dagster`, `airflow`) and its tests skip cleanly
without it, unless SCRAPESYNC_REQUIRE_ORCHESTRATORS=1 (CI, which installs both into a second
venv) makes them fail instead.

Airflow runs in a child interpreter (`airflow_child`) with its own AIRFLOW_HOME, DAG folder,
SQLite metadata DB and temp dir: Airflow reads its home once per process and configures
logging and its ORM globally, and dlt's `PipelineTasksGroup` rewrites the process's dlt
environment variables. The child is also how Airflow meets the file: a fresh interpreter
importing it from the DAG folder. Every local file a child writes (dlt's working dirs, the
lease's scratch pipelines) is under its temp dir; wiping that dir between runs makes the next
run a fresh worker that shares only the destination (./scrapesync.duckdb) with the last one.
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

from scrapesync.pipelines.runner import pipeline_for, run_lease
from scrapesync.sandbox.truth import mismatches

ROOT = Path(__file__).resolve().parent.parent
DAG_FILE = ROOT / "pipelines" / "airflow_dag.py"
# Airflow's first start (DB creation, the in-process execution API of `dag.test()`) takes
# 30-60 s on a loaded 2-core machine
CHILD_TIMEOUT = 240
# the Oxylabs test's submit task reads its queries from this file (one per line)
SUBMIT_FILE = "SCRAPESYNC_TEST_SUBMIT_FILE"
OXYLABS_QUERIES = [f"orchestrated {n}" for n in range(12)]
OXYLABS_BATCH = 5  # 12 queries: three batches, three POSTs


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
    # one dlt resource (and so one asset) for all of a provider's groups (docs/reworkd.md)
    assert keys == {"dlt_reworkd_outputs"}
    # its scale-out job too (tests/test_scaleout.py runs it)
    assert defs.get_job_def("reworkd_scaleout").executor_def.name == "multiprocess"

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


def oxylabs_to_submit(make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path) -> Any:
    """An Oxylabs sandbox configured the env way, with `OXYLABS_QUERIES` in the file the
    orchestrators' submit step reads (`SUBMIT_FILE`)."""
    sandbox = make_sandbox(oxylabs={"workdir": str(isolated / "oxylabs-sandbox")})
    configure(monkeypatch, sandbox, "oxylabs")
    queries = isolated / "queries.txt"
    queries.write_text("\n".join(OXYLABS_QUERIES) + "\n")
    monkeypatch.setenv(SUBMIT_FILE, str(queries))
    return sandbox


def test_given_dagster_when_oxylabs_jobs_are_submitted_in_one_run_then_materialisations_on_wiped_dirs_collect_each_once(  # noqa: E501
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("dagster_dlt", "dagster")
    import dagster as dg

    from scrapesync.pipelines.dagster_defs import build_definitions

    sandbox = oxylabs_to_submit(make_sandbox, monkeypatch, isolated)
    api = sandbox.providers["oxylabs"]

    @dg.op
    def submit_queries() -> None:
        submit_oxylabs_queries()

    @dg.job
    def submit() -> None:
        submit_queries()

    assets = [
        a for a in build_definitions(["oxylabs"]).assets or [] if isinstance(a, dg.AssetsDefinition)
    ]
    # every run on a new, empty dlt data dir, wiped afterwards: only the destination persists
    for run in range(2):
        for step in ("submit", "sync"):
            data_dir = isolated / f"worker-{run}-{step}"
            monkeypatch.setenv("DLT_DATA_DIR", str(data_dir))
            if step == "submit":  # the same queries again in the second run: none sent twice
                result = submit.execute_in_process(instance=dg.DagsterInstance.ephemeral())
            else:
                result = dg.materialize(assets, instance=dg.DagsterInstance.ephemeral())
            assert result.success, (run, step)
            shutil.rmtree(data_dir, ignore_errors=True)
        if run == 0:
            api.advance()  # every submitted job finishes

    posts = sandbox.requests.entries("oxylabs", "/v1/queries/batch$")
    assert [r.method for r in posts] == ["POST"] * 3, "one POST per batch, none sent twice"
    monkeypatch.setenv("DLT_DATA_DIR", str(isolated / "reader"))
    pipeline = reader("oxylabs")
    assert mismatches(pipeline, "oxylabs", api) == []
    with pipeline.sql_client() as client:
        ledger = client.execute_sql(
            "SELECT query, status FROM oxylabs.jobs WHERE origin = 'submit'"
        )
    assert sorted(ledger) == sorted((q, "done") for q in OXYLABS_QUERIES)


def airflow_child(mode: str, result_file: str) -> None:
    """Runs in the child interpreter (see `run_airflow`): parse the DAG folder, in mode `run`
    also run the DAG once with `dag.test()`, in mode `submit` with an Oxylabs submit task
    first (`add_submit_task`); the findings go to `result_file` as JSON."""
    from airflow.dag_processing.dagbag import DagBag

    result: dict[str, Any] = {}
    if mode in ("run", "submit"):
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
        if mode == "submit":
            add_submit_task(dag)
        if mode in ("run", "submit"):
            for task in dag.tasks:
                task.retries = 0  # a failed task fails the run now, not after the retry delay
            run = dag.test()
            result["state"] = str(run.state)
            result["tasks"] = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    Path(result_file).write_text(json.dumps(result))


def add_submit_task(dag: Any) -> None:
    """A user's submit task upstream of the Oxylabs sync (`submit_oxylabs_queries`)."""
    from airflow.providers.standard.operators.python import PythonOperator

    with dag:
        submit = PythonOperator(task_id="oxylabs_submit", python_callable=submit_oxylabs_queries)
    submit >> dag.get_task("oxylabs.scrapesync_oxylabs")


def submit_oxylabs_queries() -> None:
    """What a PythonOperator submitting Oxylabs jobs calls: the provider's run lease (as
    `scrapesync oxylabs submit` takes it), then the submitter, whose ledger is in the
    destination; the queries come from the file `SUBMIT_FILE` names."""
    from scrapesync.pipelines.runner import run_lease
    from scrapesync.sources.oxylabs import connect
    from scrapesync.sources.oxylabs.cli import configured

    values = [line for line in Path(os.environ[SUBMIT_FILE]).read_text().splitlines() if line]
    options = configured(batch_size=OXYLABS_BATCH)
    ox = connect(username=options.pop("username"), password=options.pop("password"), **options)
    with run_lease("oxylabs", "duckdb", purpose="submit"):
        report = ox.submitter.submit(values, "query", {"source": "google_search"})
    if report.rejected or report.unknown:
        raise RuntimeError(f"oxylabs submit: rejected {report.rejected}, unknown {report.unknown}")


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
    result["output"] = child.stdout[-2000:] + child.stderr[-6000:]  # shown when an assert fails
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


def test_given_another_run_holds_the_providers_lease_when_the_dag_runs_then_its_task_fails_with_one_line_naming_the_holder(  # noqa: E501
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("airflow", "airflow")
    sandbox = make_sandbox(reworkd={"groups": ["g-a"], "records_per_group": 10})
    configure(monkeypatch, sandbox, "reworkd")
    monkeypatch.setenv("SCRAPESYNC__LEASE_WAIT_SECONDS", "1")

    # e.g. `scrapesync sync reworkd` running on another worker
    with run_lease("reworkd", "duckdb"):
        result = run_airflow("run", isolated)

    assert result["state"] == "failed"
    assert result["tasks"] == {
        "reworkd.scrapesync_reworkd": "failed",
        "reworkd.reworkd_post_load": "upstream_failed",
    }
    assert "reworkd: not run, another run holds its lease (sync on host" in result["output"]
    assert sandbox.requests.entries("reworkd") == [], "nothing read while another run syncs"


def fresh_worker(workdir: Path) -> None:
    """Wipe the child's temp dir: the next Airflow run shares only the destination."""
    shutil.rmtree(workdir / "tmp", ignore_errors=True)


def reader(provider: str) -> Any:
    """The provider's pipeline as a reader elsewhere sees it: schema from the destination."""
    pipeline = pipeline_for(provider)
    pipeline.sync_destination()
    return pipeline


def test_given_airflow_when_oxylabs_jobs_are_submitted_in_a_task_then_a_later_run_on_a_wiped_worker_collects_each_once(  # noqa: E501
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("airflow", "airflow")
    sandbox = oxylabs_to_submit(make_sandbox, monkeypatch, isolated)
    api = sandbox.providers["oxylabs"]
    tasks = {
        "oxylabs_submit": "success",
        "oxylabs.scrapesync_oxylabs": "success",
        "oxylabs.oxylabs_post_load": "success",
    }

    # run 1: submit, then a sync that finds every job still pending
    first = run_airflow("submit", isolated)
    assert (first["state"], first["tasks"]) == ("success", tasks), first["output"]
    submitted = {job_id for job_id, status in api.truth().items() if status == "pending"}
    assert len(submitted) >= len(OXYLABS_QUERIES)
    api.advance()  # every job finishes
    fresh_worker(isolated)
    # run 2 on a wiped worker: the same submit task again, then the sync that collects
    second = run_airflow("submit", isolated)
    assert (second["state"], second["tasks"]) == ("success", tasks), second["output"]

    posts = sandbox.requests.entries("oxylabs", "/v1/queries/batch$")
    assert [r.method for r in posts] == ["POST"] * 3, "one POST per batch, none sent twice"
    pipeline = reader("oxylabs")
    assert mismatches(pipeline, "oxylabs", api) == []
    with pipeline.sql_client() as client:
        ledger = client.execute_sql(
            "SELECT query, status FROM oxylabs.jobs WHERE query IS NOT NULL"
        )
        batches = client.execute_sql(
            "SELECT state, size FROM oxylabs.submissions WHERE batch_id IN "
            "(SELECT batch_id FROM oxylabs.jobs WHERE origin = 'submit')"
        )
    assert sorted(ledger) == sorted((q, "done") for q in OXYLABS_QUERIES)
    assert sorted(batches) == [("submitted", 2), ("submitted", 5), ("submitted", 5)]


def test_given_a_running_listener_when_webhooks_arrive_then_the_next_airflow_run_reads_them_first_and_acknowledges(  # noqa: E501
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    require("airflow", "airflow")
    from scrapesync.pipelines.listen import IntakeServer, NotificationStore
    from scrapesync.sandbox.outscraper import DEFAULT_KEY
    from scrapesync.sources.outscraper.cli import webhook_handler

    # the listener: a long-running service beside Airflow, storing into the destination
    # (./scrapesync.duckdb); its spool dir is its own, never seen by the workers
    store = NotificationStore(isolated / "listener-spool")
    intake = IntakeServer(store, {"outscraper": webhook_handler(DEFAULT_KEY)}).start()
    try:
        sandbox = make_sandbox(
            outscraper={
                "webhook_url": f"{intake.url}/outscraper/hook",
                "webhook_dir": str(isolated / "listener-spool"),
            }
        )
        api = sandbox.providers["outscraper"]
        configure(monkeypatch, sandbox, "outscraper")
        first = run_airflow("run", isolated)
        assert first["state"] == "success", first["output"]

        running = next(t for t in api.tasks.values() if t.status == "IN_PROGRESS")
        waiting = next(r for r in api.requests.values() if r.status == "Pending")
        api.finish_task(running.id)
        api.finish_request(waiting.id)
        assert [status for _, _, status in api.deliveries] == [200, 200]
        notified = {(n.kind, n.object_id) for n in store.pending("outscraper")}
        assert notified == {("task", running.id), ("request", waiting.id)}
        store.db.release()  # the file is free for the DAG run
        sandbox.requests.clear()
        fresh_worker(isolated)
        # the request is known only from its webhook: finished requests are not listed
        monkeypatch.setenv("SOURCES__OUTSCRAPER__DISCOVER_REQUESTS", "false")

        second = run_airflow("run", isolated)

        assert second["state"] == "success", second["output"]
        paths = [r.path for r in sandbox.requests.entries("outscraper") if "/files/" not in r.path]
        assert paths.index(f"/tasks/{running.id}") < paths.index("/tasks"), "notified first"
        assert f"/requests/{waiting.id}" in paths
        assert store.pending("outscraper") == []
        acked = store.db.query(
            "SELECT kind, object_id FROM notifications WHERE provider = ? AND acked_at IS NOT NULL",
            ["outscraper"],
        )
        assert {(row["kind"], row["object_id"]) for row in acked} == notified
        store.db.release()
        pipeline = reader("outscraper")
        with pipeline.sql_client() as client:
            status = client.execute_sql(
                f"SELECT status FROM outscraper.tasks WHERE id = '{running.id}'"
            )
            results = client.execute_sql(
                f"SELECT count(*) FROM outscraper.request_results WHERE request_id = '{waiting.id}'"
            )
        assert status == [("SUCCESS",)]
        assert results[0][0] > 0
    finally:
        intake.stop()
