"""The promise, proven by SIGKILL: a query is never submitted twice by accident, and a
submitted job is never forgotten.

Each test runs the submission (or the sync) in a real child process that kills itself with
SIGKILL at one exact step (`SCRAPESYNC_OXYLABS_FAILPOINT`), then runs it again normally, and
checks the sandbox's own record of the jobs it created against the journal and the warehouse.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scrapesync.sources.oxylabs import apply_callbacks, connect
from scrapesync.sources.oxylabs.journal import Journal

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
report = sync(registry.get("oxylabs"), source_options=json.loads(sys.argv[1]))
print(json.dumps({"ok": report.ok, "error": report.error}))
"""


@pytest.fixture
def ox(harness: Any, tmp_path: Path) -> Any:
    return harness("oxylabs", schedules=0, html_bytes=200, workdir=str(tmp_path / "sandbox"))


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


def run_submit(h: Any, tmp_path: Path, failpoint: str | None = None, **params: Any) -> Any:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(VALUES))
    args = [json.dumps(h.options()), str(values), json.dumps(params)]
    code, result = child(SUBMIT, args, failpoint)
    if failpoint:
        assert code == -signal.SIGKILL, f"the child was not killed at {failpoint}: {result}"
    else:
        assert code == 0, result
    return result


def journal_ids(h: Any) -> set[str]:
    journal = Journal(h.options()["journal_path"])
    return {r["job_id"] for r in journal.query("SELECT job_id FROM jobs WHERE job_id IS NOT NULL")}


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
    journal = Journal(ox.options()["journal_path"])
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

    code, _ = child(SYNC, [options], failpoint="during_collection:550")
    assert code == -signal.SIGKILL

    ox.sync(concurrency=4)

    rows = ox.query("SELECT job_id, page FROM oxylabs.results")
    assert len(rows) == 600 == len(set(rows))
    assert ox.scalar("SELECT count(*) FROM oxylabs.jobs WHERE status = 'done'") == 600
    ox.sandbox.requests.clear()
    ox.sync()
    assert ox.requests(r"/results$") == []
