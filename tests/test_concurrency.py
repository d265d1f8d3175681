"""Overlapping runs on one destination: run leases, one DuckDB writer process, `status` alongside.

Every sync here is a real `scrapesync sync` child process (sandbox/crash.py) against the real
sandbox, into a real DuckDB file or PostgreSQL database. Each child has its own empty
`DLT_DATA_DIR` unless a test says otherwise: a fresh worker of a scheduler. Where a test needs
one run to be inside another (a lease held, the file held), the holder is the test process
itself, and the test waits for the child's own progress line before letting go: observed, not
timed. The outcome is always compared with the sandbox's truth (`sandbox/truth.py`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pgtest import postgres_unavailable

from scrapesync.pipelines.lease import EXIT_LEASE_HELD, acquire, current_holder
from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox.crash import ROOT, ChildSync, kill_point, sync_env
from scrapesync.sandbox.server import FaultRule, Sandbox
from scrapesync.sandbox.truth import mismatches

SANDBOX: dict[str, dict[str, Any]] = {
    "reworkd": {"groups": ["g-a", "g-b"], "records_per_group": 150},
    "scrapewise": {"runs_per_scraper": 3},
}
WAITING_FOR_FILE = "waiting for scrapesync.duckdb, held by another process"
WAITING_FOR_LEASE = "waiting for the run lease"


def worker_env(sandbox: Sandbox, provider: str, data_dir: Path, **settings: Any) -> dict[str, str]:
    """A fresh worker's environment; `settings` become SCRAPESYNC__<NAME> env vars."""
    env = sync_env(sandbox, provider, data_dir)
    for name in ("DESTINATION__POSTGRES__CREDENTIALS", "DESTINATION__DUCKDB__CREDENTIALS"):
        if name in os.environ:  # sync_env drops them; a test that sets one means it
            env[name] = os.environ[name]
    env.update({f"SCRAPESYNC__{key.upper()}": str(value) for key, value in settings.items()})
    return env


def start(
    sandbox: Sandbox,
    provider: str,
    workdir: Path,
    worker: str,
    destination: str = "duckdb",
    **s: Any,
) -> ChildSync:
    return ChildSync.start(
        provider, workdir, worker_env(sandbox, provider, workdir / worker, **s), destination
    )


def read_until(child: ChildSync, text: str) -> list[str]:
    """The child's stderr lines up to the first that contains `text` (fails if it ends first)."""
    assert child.process.stderr is not None
    seen = []
    for line in child.process.stderr:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"the child ended without saying {text!r}:\n{''.join(seen)}")


def assert_clean(code: int, out: str, err: str, expected: tuple[int, ...] = (0,)) -> None:
    assert code in expected, f"exit {code}\n{out}\n{err}"
    assert "Traceback" not in out + err, err


def assert_truth(sandbox: Sandbox, provider: str, destination: str = "duckdb") -> None:
    pipeline = pipeline_for(provider, destination)
    pipeline.sync_destination()  # the children's workers wrote it: its schema comes from there
    problems = mismatches(pipeline, provider, sandbox.providers[provider])
    assert problems == [], "\n".join(problems)


@pytest.fixture
def hold_file(isolated: Path) -> Iterator[Callable[[], Any]]:
    """Open ./scrapesync.duckdb read-write in the test process (another writer, as DuckDB sees
    it); returns the connection so the test can close it when it wants."""
    opened: list[Any] = []

    def hold() -> Any:
        connection = duckdb.connect(str(isolated / "scrapesync.duckdb"))
        opened.append(connection)
        return connection

    yield hold
    for connection in opened:
        connection.close()


# ---- same provider twice --------------------------------------------------------------------


@pytest.mark.parametrize("shared_dir", [False, True], ids=["fresh-workers", "one-data-dir"])
def test_given_two_syncs_of_one_provider_at_once_then_both_end_cleanly_and_data_equals_truth(
    make_sandbox: Any, isolated: Path, shared_dir: bool
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    children = [
        start(sandbox, "reworkd", isolated, "dlt" if shared_dir else f"worker{n}") for n in range(2)
    ]
    results = [child.finish() for child in children]

    for code, out, err in results:
        assert_clean(code, out, err, (0, EXIT_LEASE_HELD))
    assert any(code == 0 for code, _, _ in results)
    assert_truth(sandbox, "reworkd")


def test_given_a_held_lease_when_a_sync_cannot_wait_then_it_exits_75_with_one_line(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    with acquire("reworkd", pipeline_for("reworkd"), purpose="sync"):
        code, out, err = start(
            sandbox, "reworkd", isolated, "worker", lease_wait_seconds=0
        ).finish()

    assert_clean(code, out, err, (EXIT_LEASE_HELD,))
    assert out == ""
    lines = [line for line in err.splitlines() if "not run" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("scrapesync: reworkd: not run, another run holds its lease")
    assert f"pid {os.getpid()}, since " in lines[0]
    assert sandbox.requests.entries("reworkd") == [], "a run that did not start reads nothing"


@pytest.mark.parametrize(
    ("held", "shard", "runs"),
    [
        ("reworkd[1/3]", None, False),
        ("reworkd", "1/2", False),
        ("reworkd[1/3]", "1/2", False),
        ("reworkd[1/3]", "2/3", True),
        ("scrapewise", None, True),
    ],
    ids=["shard-blocks-whole", "whole-blocks-shard", "counts-differ", "same-count", "other"],
)
def test_given_a_held_lease_of_another_shape_then_a_sync_that_overlaps_it_does_not_run(
    make_sandbox: Any, isolated: Path, held: str, shard: str | None, runs: bool
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    env = worker_env(sandbox, "reworkd", isolated / "worker", lease_wait_seconds=0)
    if shard is not None:
        env["SOURCES__REWORKD__SHARD"] = shard
    with acquire(held, pipeline_for("reworkd"), purpose="sync"):
        code, out, err = ChildSync.start("reworkd", isolated, env, "duckdb").finish()

    if runs:
        assert_clean(code, out, err)
        assert sandbox.requests.entries("reworkd"), "a compatible run reads its partitions"
        return
    assert_clean(code, out, err, (EXIT_LEASE_HELD,))
    line = next(line for line in err.splitlines() if "not run" in line)
    assert f"another run holds the lease {held} (it reads the same partitions" in line, line
    assert sandbox.requests.entries("reworkd") == [], "a run that did not start reads nothing"


def test_given_a_held_lease_when_a_sync_waits_then_it_runs_once_the_holder_ends(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    with acquire("reworkd", pipeline_for("reworkd"), purpose="sync"):
        child = start(sandbox, "reworkd", isolated, "worker", lease_wait_seconds=300)
        waited = read_until(child, WAITING_FOR_LEASE)
        assert sandbox.requests.entries("reworkd") == []

    assert f"pid {os.getpid()}" in waited[-1]
    assert_clean(*child.finish())
    assert_truth(sandbox, "reworkd")
    assert current_holder(pipeline_for("reworkd"), "reworkd") is None, "released at the end"


def killed_holding_lease(sandbox: Sandbox, isolated: Path, **settings: Any) -> ChildSync:
    """A sync SIGKILLed inside its extract, its lease still in the destination."""
    data_dir = isolated / "worker-a"
    predicate = kill_point("extract", sandbox, "reworkd", data_dir)
    killed = ChildSync.start(
        "reworkd", isolated, worker_env(sandbox, "reworkd", data_dir, **settings)
    )
    assert killed.kill_when(predicate)
    sandbox.faults.clear()
    assert killed.process.returncode == -signal.SIGKILL
    holder = current_holder(pipeline_for("reworkd"), "reworkd")
    assert holder is not None
    assert holder.pid == killed.process.pid, "the dead run's lease is still there"
    return killed


def test_given_a_sync_killed_holding_its_lease_on_this_machine_then_the_next_sync_takes_it_over(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    killed = killed_holding_lease(sandbox, isolated)

    # no wait at all: the holder's process is gone, which this machine can see
    code, out, err = start(sandbox, "reworkd", isolated, "worker-b", lease_wait_seconds=0).finish()

    assert_clean(code, out, err)
    dead = f"sync on host {socket.gethostname()}, pid {killed.process.pid}"
    assert f"taking over the run lease of {dead}" in err
    assert_truth(sandbox, "reworkd")
    assert current_holder(pipeline_for("reworkd"), "reworkd") is None


def set_lease(isolated: Path, assignments: str) -> None:
    with duckdb.connect(str(isolated / "scrapesync.duckdb")) as db:
        db.execute(f"UPDATE scrapesync.scrapesync._leases SET {assignments}")


def test_given_a_sync_killed_holding_its_lease_elsewhere_then_the_lease_expires_after_its_ttl(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    killed_holding_lease(sandbox, isolated)
    # as if it ran on another machine; its last heartbeat was just now (TTL one hour)
    set_lease(isolated, "host = 'another-worker', expires_at = now() + INTERVAL 1 HOUR")

    code, out, err = start(sandbox, "reworkd", isolated, "worker-b", lease_wait_seconds=0).finish()
    assert_clean(code, out, err, (EXIT_LEASE_HELD,))
    assert "host another-worker" in err

    # now its TTL runs out within seconds: a run that waits takes the lease when it does
    set_lease(isolated, "expires_at = now() + INTERVAL 3 SECOND")
    code, out, err = start(
        sandbox, "reworkd", isolated, "worker-c", lease_wait_seconds=300
    ).finish()
    assert_clean(code, out, err)
    assert_truth(sandbox, "reworkd")
    assert current_holder(pipeline_for("reworkd"), "reworkd") is None


# ---- two providers, one DuckDB file ---------------------------------------------------------


def test_given_two_providers_on_one_duckdb_file_then_both_wait_for_the_file_and_succeed(
    make_sandbox: Any, isolated: Path, hold_file: Callable[[], Any]
) -> None:
    sandbox = make_sandbox(**SANDBOX)
    held = hold_file()
    children = {name: start(sandbox, name, isolated, f"worker-{name}") for name in SANDBOX}
    for child in children.values():
        read_until(child, WAITING_FOR_FILE)
    held.close()

    for child in children.values():
        assert_clean(*child.finish())
    for name in SANDBOX:
        assert_truth(sandbox, name)


def test_given_two_providers_started_at_once_on_one_duckdb_file_then_both_succeed(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(**SANDBOX)
    for round_ in range(2):
        if round_:
            sandbox.advance()
        children = [start(sandbox, name, isolated, f"w{round_}-{name}") for name in SANDBOX]
        for child in children:
            assert_clean(*child.finish())
    for name in SANDBOX:
        assert_truth(sandbox, name)


# ---- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def on_postgres(request: pytest.FixtureRequest) -> str:
    if postgres_unavailable() is None or os.environ.get("SCRAPESYNC_REQUIRE_POSTGRES") == "1":
        request.getfixturevalue("postgres")  # a fresh database, or the reason it is missing
    else:
        pytest.skip(str(postgres_unavailable()))
    return "postgres"


def test_given_postgres_when_two_providers_and_one_provider_twice_run_at_once_then_truth(
    make_sandbox: Any, isolated: Path, on_postgres: str
) -> None:
    sandbox = make_sandbox(**SANDBOX)
    children = [
        start(sandbox, name, isolated, f"worker-{name}-{n}", on_postgres)
        for name in SANDBOX
        for n in range(2)
    ]
    results = [child.finish() for child in children]

    for code, out, err in results:
        assert_clean(code, out, err, (0, EXIT_LEASE_HELD))
    for name in SANDBOX:
        assert_truth(sandbox, name, on_postgres)


def test_given_postgres_and_a_held_lease_then_a_second_sync_exits_75(
    make_sandbox: Any, isolated: Path, on_postgres: str
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    with acquire("reworkd", pipeline_for("reworkd", on_postgres)):
        code, out, err = start(
            sandbox, "reworkd", isolated, "w", on_postgres, lease_wait_seconds=0
        ).finish()
    assert_clean(code, out, err, (EXIT_LEASE_HELD,))
    assert "another run holds its lease" in err


# ---- destinations that cannot be opened ----------------------------------------------------


def cli(isolated: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "scrapesync.pipelines.cli", *args]
    done = subprocess.run(
        command, check=False, cwd=isolated, env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout, done.stderr


def both_env(sandbox: Sandbox, isolated: Path, **settings: Any) -> dict[str, str]:
    env = worker_env(sandbox, "reworkd", isolated / "dlt", **settings)
    env.update(
        {
            k: v
            for k, v in worker_env(sandbox, "scrapewise", isolated / "dlt").items()
            if "SOURCES" in k
        }
    )
    return env


def test_given_a_missing_directory_when_syncing_two_providers_then_each_fails_in_one_line(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(**SANDBOX)
    env = both_env(sandbox, isolated)
    env["DESTINATION__DUCKDB__CREDENTIALS"] = str(isolated / "no" / "such" / "dir" / "db.duckdb")

    code, out, err = cli(isolated, "sync", "reworkd", "scrapewise", "-q", env=env)

    assert_clean(code, out, err, (1,))
    for name in SANDBOX:
        assert f"{name}: FAILED" in out
        line = next(
            line
            for line in out.splitlines()
            if line.strip().startswith(f"{name}:") and "unavailable" in line
        )
        assert "fix: create the directory" in line
        assert "no sync_runs row written" in line


def test_given_the_file_held_beyond_the_wait_then_both_providers_fail_cleanly_naming_the_holder(
    make_sandbox: Any, isolated: Path, hold_file: Callable[[], Any]
) -> None:
    sandbox = make_sandbox(**SANDBOX)
    env = both_env(sandbox, isolated, duckdb_wait_seconds=1)
    hold_file()

    code, out, err = cli(isolated, "sync", "reworkd", "scrapewise", "-q", env=env)

    assert_clean(code, out, err, (1,))
    for name in SANDBOX:
        assert f"{name}: FAILED" in out
    assert out.count(f"held by another process (PID {os.getpid()})") == 2, out
    assert WAITING_FOR_FILE in err


def test_given_an_unwritable_location_then_the_error_names_the_fix(
    make_sandbox: Any, isolated: Path
) -> None:
    target = Path("/sys/scrapesync.duckdb")
    try:
        duckdb.connect(str(target)).close()
        pytest.skip("/sys is writable here")
    except duckdb.Error:
        pass
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    env = worker_env(sandbox, "reworkd", isolated / "dlt")
    env["DESTINATION__DUCKDB__CREDENTIALS"] = str(target)

    code, out, err = cli(isolated, "sync", "reworkd", "-q", env=env)

    assert_clean(code, out, err, (1,))
    assert "fix: make /sys writable" in out


# ---- status alongside a sync ---------------------------------------------------------------


def test_given_a_sync_in_progress_when_status_runs_then_it_reads_the_last_sync(
    make_sandbox: Any, isolated: Path
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    assert_clean(*start(sandbox, "reworkd", isolated, "w1").finish())
    sandbox.advance()
    hold = FaultRule("reworkd", r"^/v1/outputs/", kind="delay", delay=5.0, skip=1)
    sandbox.faults.add(hold)
    running = start(sandbox, "reworkd", isolated, "w2")
    while hold.times != 0 and running.process.poll() is None:  # inside its extract
        time.sleep(0.01)

    code, out, err = cli(isolated, "status", env=worker_env(sandbox, "reworkd", isolated / "s"))

    assert_clean(code, out, err, (0,))
    assert out.startswith("reworkd: ok")
    assert_clean(*running.finish())
    assert_truth(sandbox, "reworkd")


def test_given_a_writer_holding_the_file_when_status_runs_then_it_says_so_after_its_wait(
    make_sandbox: Any, isolated: Path, hold_file: Callable[[], Any]
) -> None:
    sandbox = make_sandbox(reworkd=SANDBOX["reworkd"])
    assert_clean(*start(sandbox, "reworkd", isolated, "w1").finish())
    hold_file()

    env = worker_env(sandbox, "reworkd", isolated / "s")
    code, out, err = cli(isolated, "status", "--wait", "1", env=env)

    assert_clean(code, out, err, (EXIT_LEASE_HELD,))
    assert "scrapesync status: a sync holds the destination file" in err
    assert out == ""


def test_given_no_destination_file_when_status_runs_then_nothing_is_created(
    isolated: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code, out, err = cli(isolated, "status", env=env)

    assert_clean(code, out, err, (2,))
    assert "no sync recorded" in out
    assert not (isolated / "scrapesync.duckdb").exists(), "status only reads"
