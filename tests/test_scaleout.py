"""Scale-out on Dagster (docs/scale-out.md), the way it is deployed: the real `dagster-daemon`
with its instance on PostgreSQL (runs, events, schedules) and a QueuedRunCoordinator, runs
submitted into its queue with `dagster job launch`, the multiprocess executor running one step
process per shard, every shard loading the same PostgreSQL dataset at the same time.

A run of N=3 shards against a sandbox of a few hundred Reworkd groups: once two or more shard
steps run, one step process is SIGKILLed, and the run must fail. The sandbox's data changes,
and a run of N=2 (re-sharded: every group may move to another worker) must succeed and leave
the destination exactly equal to the sandbox's truth, having read no group from before its
stored watermark minus the lookback.

Skips without the `dagster` extra (dagster, dagster-postgres) unless
SCRAPESYNC_REQUIRE_ORCHESTRATORS=1 (CI's orchestrator venv) makes that a failure; needs the
PostgreSQL at 127.0.0.1:5432 (`postgres` fixture). Every process it starts (the daemon, its
code server, run workers, step processes) is killed at the end, also when it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import pendulum
import psutil
import pytest
from pgtest import fresh_database

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox.server import FaultRule
from scrapesync.sandbox.truth import mismatches
from scrapesync.sources.common.partitions import Shard, owned
from scrapesync.sources.reworkd.settings import DEFAULT_LOOKBACK_SECONDS

MODULE = "scrapesync.pipelines.dagster_scaleout"
JOB = "reworkd_scaleout"
GROUPS = 240
RECORDS = 12
# every request is a network round trip; the first request of each shard of the first run is
# held this long, so its steps are surely still syncing when the test kills one
LATENCY_S = 0.02
HOLD_S = 15.0
RUN_TIMEOUT_S = 150.0
STEP_PID = re.compile(r"reworkd shard (\d+/\d+): syncing in step process pid (\d+)")

pytestmark = pytest.mark.timeout(420)


def require_dagster() -> None:
    """Skip without the `dagster` extra; fail instead where CI requires the orchestrators."""
    for module in ("dagster", "dagster_postgres"):
        if importlib.util.find_spec(module) is None:
            reason = f"the optional extra `dagster` is not installed (no module {module})"
            if os.environ.get("SCRAPESYNC_REQUIRE_ORCHESTRATORS") == "1":
                pytest.fail(f"SCRAPESYNC_REQUIRE_ORCHESTRATORS=1 but {reason}")
            pytest.skip(reason)


@pytest.fixture
def dagster_storage() -> Iterator[str]:
    """A fresh PostgreSQL database for Dagster's instance storage; its URL (after the check
    that the extra is installed: no database is made for a test that skips)."""
    require_dagster()
    with ExitStack() as stack:
        env = stack.enter_context(pytest.MonkeyPatch.context())
        stack.enter_context(fresh_database(env))
        url = os.environ["DESTINATION__POSTGRES__CREDENTIALS"]
        env.undo()  # the destination has a database of its own (`postgres` fixture)
        yield url


def write_instance(home: Path, storage_url: str) -> None:
    """DAGSTER_HOME/dagster.yaml as docs/scale-out.md deploys it."""
    home.mkdir(parents=True, exist_ok=True)
    # the driver named: SQLAlchemy 2.1 picks psycopg 3 for `postgresql://`, which
    # dagster-postgres does not install (it brings psycopg2)
    url = storage_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    config = {
        "storage": {"postgres": {"postgres_url": url}},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": 4,
                "dequeue_interval_seconds": 1,
                "tag_concurrency_limits": [
                    {
                        "key": "scrapesync/provider",
                        "value": {"applyLimitPerUniqueValue": True},
                        "limit": 1,
                    }
                ],
            },
        },
        "telemetry": {"enabled": False},
    }
    # YAML is a superset of JSON
    (home / "dagster.yaml").write_text(json.dumps(config, indent=2))


def configure(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    options = sandbox.providers["reworkd"].source_options(sandbox.url("reworkd"))
    for key, value in options.items():
        name = f"SOURCES__REWORKD__{key.upper()}"
        monkeypatch.setenv(name, value if isinstance(value, str) else json.dumps(value))


def session_processes(leader: int) -> list[psutil.Process]:
    """Every process of `leader`'s session and its descendants (orphans included)."""
    found: dict[int, psutil.Process] = {}
    try:
        for child in psutil.Process(leader).children(recursive=True):
            found[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == leader:
                found[proc.pid] = proc
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return list(found.values())


@contextmanager
def started(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """`command` in a session of its own; it and everything it started are killed at exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        for _ in range(3):  # a process may start another while the others are killed
            victims = [*session_processes(proc.pid)]
            for victim in victims:
                with_suppressed(victim.kill)
            with_suppressed(lambda: os.killpg(proc.pid, signal.SIGKILL))
            psutil.wait_procs(victims, timeout=10)
        proc.wait(timeout=10)


def with_suppressed(action: Any) -> None:
    with suppress(ProcessLookupError, psutil.Error):
        action()


def dagster_env(home: Path, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(home)
    # dlt imports Airflow (in CI's orchestrator venv) on its first config lookup: not here
    env["PROVIDERS__ENABLE_AIRFLOW_SECRETS"] = "false"
    env["AIRFLOW_HOME"] = str(workdir / "airflow")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launch(env: dict[str, str], shards: int, log: Path) -> str:
    """Submit a run of N=`shards` into the instance's queue; its run id."""
    from scrapesync.pipelines.dagster_scaleout import run_config

    run_id = str(uuid.uuid4())
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "job",
        "launch",
        "-m",
        MODULE,
        "-j",
        JOB,
        "--run-id",
        run_id,
        "--config-json",
        json.dumps(run_config("reworkd", shards, destination="postgres")),
    ]
    with started(command, env, log) as proc:
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    return run_id


def step_pids(instance: Any, run_id: str) -> dict[str, tuple[str, int]]:
    """step key -> (shard, pid of its step process), as each shard step logged it."""
    found = {}
    for entry in instance.all_logs(run_id):
        match = STEP_PID.search(entry.user_message or "")
        if match and entry.step_key:
            found[entry.step_key] = (match.group(1), int(match.group(2)))
    return found


def finished_steps(instance: Any, run_id: str) -> dict[str, str]:
    """step key -> STEP_SUCCESS / STEP_FAILURE."""
    done = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            done[entry.step_key] = event.event_type_value
    return done


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_running_steps(instance: Any, run_id: str, count: int) -> dict[str, tuple[str, int]]:
    """Shard steps whose processes run now, once `count` of them do."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        done = finished_steps(instance, run_id)
        running = {
            step: (shard, pid)
            for step, (shard, pid) in step_pids(instance, run_id).items()
            if step not in done and alive(pid)
        }
        if len(running) >= count:
            return running
        assert not instance.get_run_by_id(run_id).is_finished, "the run ended before its steps"
        time.sleep(0.3)
    raise AssertionError(f"fewer than {count} shard steps ran at once")


def wait_finished(instance: Any, run_id: str) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish in {RUN_TIMEOUT_S:g} s")


def watermarks() -> dict[str, pendulum.DateTime]:
    """Each group's stored watermark (`reworkd._scrapesync_partitions`), as the next run reads
    it: a load that never completed left its `previous_watermark` in force."""
    pipeline = pipeline_for("reworkd", "postgres")
    with pipeline.sql_client() as client:
        columns = client.execute_sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'reworkd' AND table_name = '_scrapesync_partitions'"
        )
        # the row's load: dlt's own column where the rows carry it
        load_id = "_dlt_load_id" if ("_dlt_load_id",) in (columns or []) else "load_id"
        rows = client.execute_sql(
            "SELECT p.partition, CASE WHEN l.status = 0 THEN p.watermark "
            "ELSE p.previous_watermark END FROM reworkd._scrapesync_partitions AS p "
            f"LEFT JOIN reworkd._dlt_loads AS l ON l.load_id = p.{load_id}"
        )
    return {group: utc(str(mark)) for group, mark in rows or [] if mark}


def utc(text: str) -> pendulum.DateTime:
    moment = pendulum.parse(text, tz="UTC")
    assert isinstance(moment, pendulum.DateTime), text
    return moment


def earliest_reads(sandbox: Any) -> dict[str, pendulum.DateTime | None]:
    """Per group, the earliest `created_after` a request asked for (None: from the start)."""
    asked: dict[str, list[pendulum.DateTime | None]] = {}
    for request in sandbox.requests.entries("reworkd", "/v1/outputs/"):
        since = request.query.get("created_after", [None])[0]
        moment = utc(since) if since else None
        asked.setdefault(request.path.rsplit("/", 1)[-1], []).append(moment)
    return {
        group: None if None in moments else min(m for m in moments if m is not None)
        for group, moments in asked.items()
    }


def hold_each_shard(sandbox: Any, groups: list[str], count: int) -> None:
    """The first request of each shard's first group waits `HOLD_S`, then is answered."""
    for index in range(count):
        first = owned(groups, Shard(index, count))[0]
        sandbox.faults.add(
            FaultRule("reworkd", f"/v1/outputs/{first}$", kind="delay", delay=HOLD_S)
        )


def test_given_dagster_shards_when_a_step_process_is_killed_then_a_resharded_run_restores_the_truth(
    make_sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
    isolated: Path,
    dagster_storage: str,
    postgres: None,
) -> None:
    import dagster as dg

    sandbox = make_sandbox(reworkd={"groups": GROUPS, "records_per_group": RECORDS})
    api = sandbox.providers["reworkd"]
    api.latency = LATENCY_S
    configure(monkeypatch, sandbox)
    groups = list(api.groups)
    hold_each_shard(sandbox, groups, 3)
    home = isolated / "dagster-home"
    write_instance(home, dagster_storage)
    env = dagster_env(home, isolated)
    log = isolated / "dagster.log"
    daemon = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", MODULE]

    with started(daemon, env, log) as scheduler:
        instance = dg.DagsterInstance.from_config(str(home))
        first = launch(env, 3, log)
        running = wait_running_steps(instance, first, 2)
        step, (shard, victim) = sorted(running.items())[0]
        assert victim in {p.pid for p in session_processes(scheduler.pid)}, "a daemon's worker"
        os.kill(victim, signal.SIGKILL)
        run = wait_finished(instance, first)
        assert run.status == dg.DagsterRunStatus.FAILURE, log.read_text()[-3000:]
        pids = step_pids(instance, first)
        assert len({pid for _, pid in pids.values()}) == len(pids) >= 2, "a process per step"
        assert finished_steps(instance, first).get(step) == "STEP_FAILURE", (step, shard)

        stored = watermarks()
        api.advance()
        sandbox.requests.clear()
        second = launch(env, 2, log)
        run = wait_finished(instance, second)
        assert run.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-5000:]
        done = finished_steps(instance, second)
        assert sorted(s for s in done if "shard[" in s) == [
            "sync_reworkd_shard[shard_0_of_2]",
            "sync_reworkd_shard[shard_1_of_2]",
        ]
        assert set(done.values()) == {"STEP_SUCCESS"}

    reader = pipeline_for("reworkd", "postgres")
    reader.sync_destination()
    problems = mismatches(reader, "reworkd", api)
    assert problems == [], problems[:5]
    # every group read in the re-sharded run; none from before its watermark - lookback
    asked = earliest_reads(sandbox)
    assert set(asked) == set(groups)
    lookback = pendulum.duration(seconds=DEFAULT_LOOKBACK_SECONDS)
    assert stored, "the shards that finished stored their groups' watermarks"
    early = {
        group: (str(since), str(mark))
        for group, mark in stored.items()
        if (since := asked[group]) is None or since < mark - lookback
    }
    assert early == {}
