"""The promise, proven by SIGKILL: a query is never submitted twice by accident, and a
submitted job is never forgotten, with the ledger in the destination (DuckDB and PostgreSQL).

Each test runs the submission (or the sync) in a real child process that kills itself with
SIGKILL at one exact step (`SCRAPESYNC_OXYLABS_FAILPOINT`), wipes the local dlt data dir (the
next run lands on a fresh worker), runs it again normally, and checks the sandbox's own record
of the jobs it created against the ledger and the warehouse.

PostgreSQL is the server at 127.0.0.1:5432 (user postgres, trust auth), a new database per
test; without a server those cases skip, unless SCRAPESYNC_REQUIRE_POSTGRES=1 (CI) makes them
fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sources.common.statedb import StateDB
from scrapesync.sources.oxylabs import apply_callbacks, connect
from scrapesync.sources.oxylabs.journal import LEDGER_SCHEMA, Journal

ROOT = Path(__file__).resolve().parent.parent
VALUES = [f"query {n:05d}" for n in range(12_000)]  # three batches: 5,000 + 5,000 + 2,000
SUBMIT = """
import json, sys
from scrapesync.sources.oxylabs import connect
options, params = json.loads(sys.argv[1]), json.loads(sys.argv[3])
values = json.load(open(sys.argv[2]))
report = connect(**options).submitter.submit(values, "query", {"source": "google_search", **params})
print(json.dumps({"submitted": report.submitted, "known": report.already_known,
                  "unknown": report.unknown}))
"""
SYNC = """
import json, sys
from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import sync
report = sync(registry.get("oxylabs"), destination=sys.argv[2],
              source_options=json.loads(sys.argv[1]))
print(json.dumps({"ok": report.ok, "error": report.error}))
"""


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The destination holding the ledger; CLI actions and the children find it in config."""
    monkeypatch.setenv("SCRAPESYNC__DESTINATION", request.param)
    if request.param == "postgres":
        request.getfixturevalue("postgres")
    return str(request.param)


@pytest.fixture
def ox(harness: Any, tmp_path: Path, destination: str) -> Any:
    h = harness("oxylabs", schedules=0, html_bytes=200, workdir=str(tmp_path / "sandbox"))
    options = h.options
    # no local `journal_path`: the ledger lives in the destination
    h.options = lambda **o: {k: v for k, v in options(**o).items() if k != "journal_path"}
    h.destination = destination
    return h


def child(script: str, args: list[str], failpoint: str | None = None) -> tuple[int, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SCRAPESYNC_OXYLABS_FAILPOINT", None)
    if failpoint:
        env["SCRAPESYNC_OXYLABS_FAILPOINT"] = failpoint
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout.strip().splitlines()
    return done.returncode, json.loads(out[-1]) if out and done.returncode == 0 else done.stderr


def wipe_local_dir() -> None:
    """The next run lands on a fresh worker: nothing of dlt's local data dir survives."""
    shutil.rmtree(os.environ["DLT_DATA_DIR"], ignore_errors=True)


def ledger() -> Journal:
    return Journal(StateDB.from_config(LEDGER_SCHEMA))


def run_submit(
    h: Any,
    tmp_path: Path,
    failpoint: str | None = None,
    values: list[str] = VALUES,
    **params: Any,
) -> Any:
    listed = tmp_path / "values.json"
    listed.write_text(json.dumps(values))
    args = [json.dumps(h.options()), str(listed), json.dumps(params)]
    code, result = child(SUBMIT, args, failpoint)
    if failpoint:
        assert code == -signal.SIGKILL, f"the child was not killed at {failpoint}: {result}"
        wipe_local_dir()
    else:
        assert code == 0, result
    return result


def journal_ids(h: Any) -> set[str]:
    rows = ledger().query("SELECT job_id FROM jobs WHERE job_id IS NOT NULL")
    return {r["job_id"] for r in rows}


def assert_each_query_created_once(h: Any, expected: int) -> None:
    created = Counter(h.api.created_values)
    assert sum(created.values()) == expected
    assert max(created.values()) == 1, "a query was submitted twice"


@pytest.mark.parametrize("step", ["after_intent", "after_ledger_write"])
def test_given_a_kill_where_the_outcome_is_known_when_rerun_then_every_query_is_sent_once(
    ox: Any, tmp_path: Path, step: str
) -> None:
    run_submit(ox, tmp_path, failpoint=f"{step}:2")
    sent_before = len(ox.api.created_values)
    assert sent_before == (5000 if step == "after_intent" else 10_000)

    rerun = run_submit(ox, tmp_path)

    assert rerun["unknown"] == []
    assert_each_query_created_once(ox, 12_000)
    assert journal_ids(ox) == set(ox.api.jobs), "a submitted job is missing from the journal"


def test_given_a_kill_before_the_request_then_the_batch_is_reported_not_resent_until_forced(
    ox: Any, tmp_path: Path
) -> None:
    run_submit(ox, tmp_path, failpoint="before_request:2")
    assert len(ox.api.created_values) == 5000

    rerun = run_submit(ox, tmp_path)

    assert len(rerun["unknown"]) == 1, "the batch that may have been sent must be reported"
    assert_each_query_created_once(ox, 7000)
    batch = rerun["unknown"][0]
    ox_client = connect(**ox.options())
    note = ox_client.journal.query("SELECT note FROM batches WHERE batch_id = ?", (batch,))
    assert f"scrapesync oxylabs resolve {batch} --resubmit" in note[0]["note"]

    again = run_submit(ox, tmp_path)
    assert again["submitted"] == 0, "an unknown batch is never resent by a plain rerun"

    forced = ox_client.submitter.resubmit_unknown(batch)
    assert forced.submitted == 5000
    assert_each_query_created_once(ox, 12_000)
    assert journal_ids(ox) == set(ox.api.jobs)


def test_given_a_kill_after_the_answer_then_nothing_is_resent_and_callbacks_recover_the_ids(
    ox: Any, tmp_path: Path
) -> None:
    callback_url = "http://127.0.0.1:9/oxylabs/unused"  # delivered by hand below
    run_submit(ox, tmp_path, failpoint="after_response:2", callback_url=callback_url)
    assert len(ox.api.created_values) == 10_000
    assert len(journal_ids(ox)) == 5000, "the answer of batch 2 died with the process"

    rerun = run_submit(ox, tmp_path, callback_url=callback_url)
    assert len(rerun["unknown"]) == 1
    assert_each_query_created_once(ox, 12_000)

    # the callbacks of batch 2's jobs carry its tag: storing them (as the intake does) and
    # applying them (the first step of every sync) gives the journal every job id back
    ox.api.advance()
    journal = ledger()
    batch2 = [job for _, job in ox.api.callbacks if job["query"] in set(VALUES[5000:10_000])]
    for job in batch2[:-1]:  # one callback is lost on the way
        journal.store_callback(job, json.dumps(job).encode())
    assert apply_callbacks(journal) == 4999

    missing = set(ox.api.jobs) - journal_ids(ox)
    assert missing == {batch2[-1]["id"]}, "only the job whose callback was lost awaits its id"
    state = journal.query("SELECT state FROM batches WHERE batch_id = ?", (rerun["unknown"][0],))
    assert state[0]["state"] == "submitted", "one callback proves the batch was accepted"
    late = batch2[-1]
    journal.store_callback(late, json.dumps(late).encode())
    apply_callbacks(journal)
    assert journal_ids(ox) == set(ox.api.jobs), "a submitted job was forgotten"
    assert Counter(ox.api.created_values).most_common(1)[0][1] == 1


def test_given_a_kill_during_collection_when_synced_again_then_every_result_lands_once(
    ox: Any, tmp_path: Path
) -> None:
    connect(**ox.options()).submitter.submit(VALUES[:600], "query", {"source": "google_search"})
    ox.api.advance()
    options = json.dumps(ox.options(concurrency=4))

    code, _ = child(SYNC, [options, ox.destination], failpoint="during_collection:550")
    assert code == -signal.SIGKILL
    wipe_local_dir()

    synced(ox, options)  # a fresh worker

    rows = warehouse(ox, "SELECT job_id, page FROM oxylabs.results")
    assert len(rows) == 600 == len(set(rows))
    assert warehouse(ox, "SELECT count(*) FROM oxylabs.jobs WHERE status = 'done'") == [(600,)]
    wipe_local_dir()
    ox.sandbox.requests.clear()
    synced(ox, options)
    assert ox.requests(r"/results$") == [], "a collected job is never fetched again"


def test_given_jobs_submitted_on_one_worker_then_a_fresh_worker_collects_them_and_sends_none(
    ox: Any, tmp_path: Path
) -> None:
    values = VALUES[:600]
    run_submit(ox, tmp_path, values=values)  # worker A
    wipe_local_dir()
    ox.api.advance()
    options = json.dumps(ox.options())

    synced(ox, options)  # worker B, empty local dir
    wipe_local_dir()
    again = run_submit(ox, tmp_path, values=values)  # worker C submits the same list

    assert warehouse(ox, "SELECT count(*) FROM oxylabs.results") == [(600,)]
    assert (again["submitted"], again["known"]) == (0, 600), "nothing is paid twice"
    assert_each_query_created_once(ox, 600)


def synced(h: Any, options: str) -> None:
    """One `scrapesync sync oxylabs` in a child process that must succeed."""
    code, report = child(SYNC, [options, h.destination])
    assert code == 0, report
    assert report["ok"], report


def warehouse(h: Any, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the destination through the pipeline's own SQL client."""
    pipeline = pipeline_for("oxylabs", h.destination)
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]
