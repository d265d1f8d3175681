"""Oxylabs end to end: real sandbox over HTTP, real dlt pipelines, real DuckDB, real journal."""

from __future__ import annotations

import http.client
import logging
from collections import Counter
from typing import Any

import orjson
import pytest

from scrapesync.pipelines.listen import IntakeServer, NotificationStore
from scrapesync.sources.oxylabs import connect
from scrapesync.sources.oxylabs.callbacks import CallbackerIPs, CallbackHandler
from scrapesync.sources.oxylabs.cli import ListenHandler

TOKEN = "tok-0123456789abcdef"


def in_destination(h: Any) -> Any:
    """The harness without the sandbox's local `journal_path`: the ledger lives in the
    destination (./scrapesync.duckdb), as in production."""
    options = h.options
    h.options = lambda **o: {k: v for k, v in options(**o).items() if k != "journal_path"}
    return h


@pytest.fixture
def ox(harness: Any, tmp_path: Any) -> Any:
    return in_destination(harness("oxylabs", schedules=0, workdir=str(tmp_path / "sandbox")))


def client(h: Any, **overrides: Any) -> Any:
    return connect(**h.options(**overrides))


def submit(h: Any, values: list[str], **params: Any) -> Any:
    return client(h).submitter.submit(values, "query", {"source": "google_search", **params})


def statuses(h: Any) -> dict[str, int]:
    return dict(h.query("SELECT status, count(*) FROM oxylabs.jobs GROUP BY 1"))


def test_given_submitted_queries_when_jobs_finish_then_pages_and_ledger_land(ox: Any) -> None:
    values = [f"shoes {n}" for n in range(40)]
    report = submit(ox, values, pages=2)
    assert report.submitted == 40
    ox.sync()
    assert statuses(ox) == {"pending": 40}
    assert ox.scalar("SELECT count(*) FROM oxylabs.submissions WHERE state = 'submitted'") == 1

    ox.api.advance()
    ox.sync()

    assert statuses(ox) == {"done": 40}
    rows = ox.query("SELECT job_id, page, query, content FROM oxylabs.results")
    assert len(rows) == 80 == len({(r[0], r[1]) for r in rows})
    assert {r[2] for r in rows} == set(values)
    assert all(f"data-job='{r[0]}' data-page='{r[1]}'" in r[3] for r in rows)
    ledger = ox.query("SELECT id, result_pages FROM oxylabs.jobs")
    assert {job_id for job_id, _ in ledger} == set(ox.api.truth())
    assert all(len(job_id) == 19 and pages == 2 for job_id, pages in ledger)

    ox.sandbox.requests.clear()
    ox.sync()
    assert ox.requests(r"/results$") == [], "a collected job must never be fetched again"
    assert ox.scalar("SELECT count(*) FROM oxylabs.results") == 80


def test_given_parsed_jobs_then_parsed_content_is_flattened_into_typed_columns(ox: Any) -> None:
    submit(ox, ["laptop", "phone"], parse=True)
    ox.api.advance()
    ox.sync()
    columns = dict(
        ox.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'oxylabs' AND table_name = 'results'"
        )
    )
    assert columns["parsed__total_results"] == "BIGINT"
    assert columns["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert ox.scalar("SELECT count(*) FROM oxylabs.results__parsed__results__organic") == 4


def test_given_the_same_list_again_then_nothing_is_resubmitted_unless_forced(ox: Any) -> None:
    values = ["a", "b", "c", "b"]
    first = submit(ox, values)
    again = submit(ox, values)
    other_params = submit(ox, values, geo_location="Germany")

    assert (first.submitted, first.duplicates_in_input) == (3, 1)
    assert (again.submitted, again.already_known) == (0, 3)
    assert other_params.submitted == 3, "other job parameters are another fingerprint"
    assert Counter(ox.api.created_values) == {"a": 2, "b": 2, "c": 2}

    forced = client(ox).submitter.submit(["a"], "query", {"source": "google_search"}, force=True)
    assert forced.submitted == 1
    assert Counter(ox.api.created_values)["a"] == 3


def test_given_invalid_parameters_then_nothing_is_sent_and_a_rejected_batch_can_be_retried(
    ox: Any,
) -> None:
    with pytest.raises(ValueError, match="single value"):
        submit(ox, ["x"], domain=["com", "de"])
    assert ox.requests("/v1/queries") == []

    ox.api.users["sandbox_user"] = "changed"
    rejected = submit(ox, ["x", "y"])
    assert rejected.submitted == 0
    assert len(rejected.rejected) == 1
    assert "Client not found" in rejected.rejected[0][1]

    ox.api.users["sandbox_user"] = "sandbox_pass"
    retried = submit(ox, ["x", "y"])
    assert retried.submitted == 2, "a rejected batch created nothing, so it may be sent again"
    assert Counter(ox.api.created_values) == {"x": 1, "y": 1}


def test_given_results_expired_when_synced_then_jobs_are_marked_expired_with_a_warning(
    ox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    submit(ox, [f"q{n}" for n in range(10)])
    ox.api.advance()
    lost = sorted(ox.api.jobs)[:3]
    ox.api.expire(lost)

    with caplog.at_level(logging.WARNING):
        ox.sync()

    assert statuses(ox) == {"done": 7, "expired": 3}
    assert ox.scalar("SELECT count(*) FROM oxylabs.results") == 7
    assert set(lost).isdisjoint(r[0] for r in ox.query("SELECT job_id FROM oxylabs.results"))
    assert "results of 3 jobs expired" in caplog.text


def test_given_faulted_jobs_then_reason_is_kept_and_612_jobs_are_resubmitted_once(
    harness: Any, tmp_path: Any
) -> None:
    h = in_destination(
        harness("oxylabs", schedules=0, fault_every=2, workdir=str(tmp_path / "sandbox"))
    )
    values = [f"q{n}" for n in range(8)]
    submit(h, values)
    h.api.advance()
    h.sync(max_resubmits=1)

    faulted = h.query("SELECT query, fault_code, fault_reason, status FROM oxylabs.jobs")
    by_code = Counter((code, status) for _, code, _, status in faulted if code)
    assert by_code == {(612, "resubmitted"): 2, (613, "faulted"): 2}
    assert all("612" in reason or "613" in reason for _, code, reason, _ in faulted if code)
    created = Counter(h.api.created_values)
    resubmitted = {q for q, code, _, _ in faulted if code == 612}
    assert {q for q, n in created.items() if n == 2} == resubmitted

    h.api.advance()
    h.sync(max_resubmits=1)
    h.sync(max_resubmits=1)
    assert max(Counter(h.api.created_values).values()) == 2, "never more than N new attempts"
    assert h.scalar("SELECT max(attempt) FROM oxylabs.jobs") == 1


def test_given_storage_mode_then_results_come_from_the_bucket_not_the_api(ox: Any) -> None:
    submit(ox, ["tv", "radio"], storage_type="s3", storage_url="my-bucket/scrapes")
    ox.api.advance()
    ox.sandbox.requests.clear()
    ox.sync()

    assert ox.requests(r"/results$") == []
    assert len(ox.requests(r"/v1/queries/\d+$")) == 2
    contents = ox.query("SELECT job_id, content FROM oxylabs.results ORDER BY job_id")
    assert [job_id for job_id, _ in contents] == sorted(ox.api.jobs)
    assert all(f"data-job='{job_id}'" in html for job_id, html in contents)


def test_given_scheduler_ids_above_2_pow_53_then_they_are_stored_exactly(
    harness: Any, tmp_path: Any
) -> None:
    h = in_destination(harness("oxylabs", schedules=2, workdir=str(tmp_path / "sandbox")))
    h.api.advance()
    h.api.advance()
    h.sync()

    expected = sorted(h.api.schedules)
    assert all(sid > 2**53 for sid in expected)
    assert sorted(r[0] for r in h.query("SELECT schedule_id FROM oxylabs.schedules")) == expected
    runs = h.query("SELECT schedule_id, run_id, job_id, result_status FROM oxylabs.schedule_runs")
    sandbox_jobs = {
        (sid, run["run_id"], str(job["id"]))
        for sid, schedule in h.api.schedules.items()
        for run in schedule.runs
        for job in run["jobs"]
    }
    assert {r[:3] for r in runs} == sandbox_jobs
    assert all(int(job_id) > 2**53 for _, _, job_id, _ in runs)
    done = {r[2] for r in runs if r[3] == "done"}
    assert {r[0] for r in h.query("SELECT job_id FROM oxylabs.results")} == done
    assert h.scalar("SELECT count(*) FROM oxylabs.results") == h.api.expected_rows()["results"]

    gone = expected[0]
    del h.api.schedules[gone]
    h.sync()
    assert [r[0] for r in h.query("SELECT schedule_id FROM oxylabs.schedules")] == expected[1:]


def _intake(h: Any, tmp_path: Any) -> Any:
    ox = client(h)
    handler = CallbackHandler(ox.journal, TOKEN, CallbackerIPs(ox.reader))
    store = NotificationStore(tmp_path / "intake")
    return IntakeServer(store, {"oxylabs": ListenHandler(lambda: handler)}).start()


def test_given_callbacks_then_they_are_stored_once_and_those_jobs_are_collected_first(
    ox: Any, tmp_path: Any
) -> None:
    intake = _intake(ox, tmp_path)
    try:
        submit(ox, [f"c{n}" for n in range(6)], callback_url=f"{intake.url}/oxylabs/{TOKEN}")
        ox.api.advance()
        sent = ox.api.deliver_callbacks(drop=1, duplicate=2, reverse=True)
    finally:
        intake.stop()
    assert sent == 7
    journal = client(ox).journal
    assert len(journal.query("SELECT * FROM callbacks")) == 5

    ox.sandbox.requests.clear()
    ox.sync(concurrency=1)  # one at a time: the request order is the collection order

    assert statuses(ox) == {"done": 6}, "the job whose callback was lost is found by polling"
    notified = ox.scalar("SELECT count(*) FROM oxylabs.jobs WHERE callback_at IS NOT NULL")
    assert notified == 5
    fetched = [e.path.split("/")[3] for e in ox.requests(r"/results$")]
    callback_ids = {r["job_id"] for r in journal.query("SELECT job_id FROM callbacks")}
    assert len(fetched) == 6
    assert set(fetched[:5]) == callback_ids


def _post(url: str, body: bytes, source: str = "127.0.0.1") -> int:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    conn = http.client.HTTPConnection(host, int(port), source_address=(source, 0), timeout=5)
    try:
        conn.request("POST", "/" + url.split("/", 3)[3], body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_given_a_forged_callback_then_it_is_rejected_and_nothing_is_stored(
    ox: Any, tmp_path: Any
) -> None:
    intake = _intake(ox, tmp_path)
    job = orjson.dumps({"id": "7300439540206948353", "status": "done", "query": "x"})
    try:
        wrong_ip = _post(f"{intake.url}/oxylabs/{TOKEN}", job, source="127.0.0.1")
        wrong_token = _post(f"{intake.url}/oxylabs/not-the-token", job, source="127.0.0.2")
        not_json = _post(f"{intake.url}/oxylabs/{TOKEN}", b"<html>", source="127.0.0.2")
        genuine = _post(f"{intake.url}/oxylabs/{TOKEN}", job, source="127.0.0.2")
    finally:
        intake.stop()
    assert (wrong_ip, wrong_token, not_json, genuine) == (403, 404, 400, 200)
    assert len(client(ox).journal.query("SELECT * FROM callbacks")) == 1


def test_given_a_tight_rate_limit_then_the_sync_slows_down_and_loses_nothing(
    harness: Any, tmp_path: Any
) -> None:
    h = in_destination(
        harness("oxylabs", schedules=0, rate_limit=15, workdir=str(tmp_path / "sandbox"))
    )
    submit(h, [f"r{n}" for n in range(40)])
    h.api.advance()
    report = h.sync(concurrency=8, requests_per_second=100)
    assert statuses(h) == {"done": 40}
    assert h.scalar("SELECT count(*) FROM oxylabs.results") == 40
    throttled = [e for e in h.requests() if e.status == 429]
    assert report.stats.throttled == len(throttled)
    assert len(throttled) < 20, "the x-ratelimit headers pause the workers before 429s pile up"


def test_given_the_cli_when_submitting_from_a_file_with_wait_then_every_job_is_collected(
    ox: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scrapesync.pipelines.cli import main
    from scrapesync.sources.oxylabs import cli as oxylabs_cli

    for name, value in ox.options().items():
        monkeypatch.setenv(f"SOURCES__OXYLABS__{name.upper()}", str(value))
    urls = tmp_path / "urls.txt"
    urls.write_text("https://shop.example.com/1\n\nhttps://shop.example.com/2\n")
    real_sync, syncs = oxylabs_cli.run_sync, []

    def sync_then_jobs_finish(host: Any) -> bool:
        syncs.append(1)
        ok = real_sync(host)
        ox.api.advance()  # the jobs finish between two polls
        return ok

    monkeypatch.setattr(oxylabs_cli, "run_sync", sync_then_jobs_finish)
    argv = ["oxylabs", "submit", "--url", "--source", "universal", "--file", str(urls)]
    code = main([*argv, "--wait", "--timeout", "30", "--poll-interval", "0.01"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "submitted 2 jobs in 1 batch(es)" in out
    assert "every job is terminal" in out
    assert len(syncs) == 2
    assert ox.scalar("SELECT count(*) FROM oxylabs.results") == 2
    assert main(argv) == 0
    assert "submitted 0 jobs" in capsys.readouterr().out
