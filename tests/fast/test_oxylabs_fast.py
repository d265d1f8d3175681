"""Oxylabs in milliseconds: collection, submission, errors, Scheduler reads, hints, transforms.

Every test drives the package's real client code over in-process HTTP (`http` fixture): no
sandbox server, no DuckDB. Bodies come from `builders_oxylabs` (shaped like docs/oxylabs.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders_oxylabs import (
    JOB_ID,
    SCHEDULE_ID,
    SCHEDULER_JOB_ID,
    JobBuilder,
    OxylabsRequests,
    ResultsResponseBuilder,
    batch_response,
    journal_job,
    oxylabs_error,
    pending_results,
    raw_json,
    run_job,
    runs_response,
    schedule_detail,
    schedules_list,
)
from httpmock import HttpMocker, HttpResponse

from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.oxylabs import oxylabs_source
from scrapesync.sources.oxylabs.callbacks import CallbackerIPs
from scrapesync.sources.oxylabs.client import _oxylabs_error
from scrapesync.sources.oxylabs.resources import Oxylabs, connect
from scrapesync.sources.oxylabs.scheduler import schedule_rows, scheduled_jobs
from scrapesync.sources.oxylabs.settings import BATCH_PATH, ENDPOINTS, TAG_PREFIX
from scrapesync.sources.oxylabs.transform import ledger_row, oxylabs_time, result_row

ASK = OxylabsRequests()


@pytest.fixture
def ox(http: HttpMocker, tmp_path: Path) -> Iterator[Oxylabs]:
    bundle = connect(
        "user",
        "pass1",
        base_url=http.base_url,
        journal_path=str(tmp_path / "journal.sqlite"),
        requests_per_second=1000,
        concurrency=2,
    )
    yield bundle
    bundle.journal.close()


# -- collection: GET /v1/queries/{id}/results ----------------------------------------------------
def test_given_a_pending_job_when_polled_then_it_stays_pending_and_raw_results_were_asked(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.results(result_type="raw"), pending_results())

    outcome = ox.collector.fetch(journal_job(parse=False))

    assert (outcome.status, outcome.pages) == ("pending", [])


def test_given_a_done_job_with_two_pages_then_both_pages_become_keyed_result_rows(
    http: HttpMocker, ox: Oxylabs
) -> None:
    body = ResultsResponseBuilder().with_page("<html>1</html>").with_page("<html>2</html>")
    http.get(ASK.results(result_type="raw"), body.build())

    outcome = ox.collector.fetch(journal_job(parse=False))

    assert outcome.status == "done"
    assert [(r["job_id"], r["page"], r["content"]) for r in outcome.pages] == [
        (JOB_ID, 1, "<html>1</html>"),
        (JOB_ID, 2, "<html>2</html>"),
    ]
    assert outcome.finished_at == "2025-03-01 09:00:15"
    assert all(r["query"] == "adidas" and r["source"] == "google_search" for r in outcome.pages)


def test_given_a_parsed_job_then_parsed_results_are_asked_and_kept_as_an_object(
    http: HttpMocker, ox: Oxylabs
) -> None:
    parsed = {"results": {"organic": [{"pos": 1, "title": "adidas"}]}, "parse_status_code": 12000}
    http.get(ASK.results(result_type="parsed"), ResultsResponseBuilder().with_page(parsed).build())

    outcome = ox.collector.fetch(journal_job(parse=True))

    assert outcome.pages[0]["parsed"] == parsed
    assert "content" not in outcome.pages[0]


@pytest.mark.parametrize(
    ("code", "reason"),
    [(612, "612 Undefined Internal Error"), (613, "613 Faulted After Too Many Retries")],
)
def test_given_a_faulted_job_then_its_code_and_reason_are_kept_and_no_page_is_loaded(
    http: HttpMocker, ox: Oxylabs, code: int, reason: str
) -> None:
    http.get(ASK.results(), ResultsResponseBuilder().faulted(code).build())

    outcome = ox.collector.fetch(journal_job(parse=False))

    assert (outcome.status, outcome.pages, outcome.fault_code) == ("faulted", [], code)
    assert outcome.fault_reason is not None
    assert outcome.fault_reason.startswith(reason)


def test_given_expired_results_then_the_job_is_expired_with_the_providers_message(
    http: HttpMocker, ox: Oxylabs
) -> None:
    gone = "The job ID you are looking for is no longer available."
    http.get(ASK.results(), oxylabs_error(404, gone))

    outcome = ox.collector.fetch(journal_job(parse=False))

    assert (outcome.status, outcome.fault_reason) == ("expired", gone)


def test_given_pages_without_numbers_then_they_take_their_position_in_the_answer(
    http: HttpMocker, ox: Oxylabs
) -> None:
    body = ResultsResponseBuilder().with_page("a").with_page("b").without_page_numbers()
    http.get(ASK.results(), body.build())

    outcome = ox.collector.fetch(journal_job(parse=False))

    assert [r["page"] for r in outcome.pages] == [1, 2]


def test_given_a_page_number_that_is_not_a_number_then_the_answer_is_malformed(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.results(), ResultsResponseBuilder().with_page("x", page="one").build())

    with pytest.raises(ProviderAPIError, match="malformed response: result page 'one'"):
        ox.collector.fetch(journal_job(parse=False))


def test_given_html_instead_of_results_then_the_error_says_the_results_are_not_json(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.results(), HttpResponse(body="<html>maintenance</html>"))

    with pytest.raises(ProviderAPIError, match="the results are not JSON"):
        ox.collector.fetch(journal_job(parse=False))


def test_given_a_cloud_storage_job_then_status_is_read_and_pages_come_from_the_bucket(
    http: HttpMocker, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    body = ResultsResponseBuilder().with_page("<html>stored</html>").build()
    (bucket / f"{JOB_ID}.json").write_bytes(orjson.dumps(body.json))
    http.get(ASK.job(), HttpResponse(json=JobBuilder(status="done").build()))
    ox = connect(
        "user", "pass1", http.base_url, str(tmp_path / "j.sqlite"), storage_bucket_url=str(bucket)
    )

    outcome = ox.collector.fetch(journal_job(storage_type="s3", storage_url="b/path"))

    assert [r["content"] for r in outcome.pages] == ["<html>stored</html>"]
    assert http.calls(ASK.results().path) == [], "stored results are not downloaded again"


# -- errors: the provider's bodies -> ProviderAPIError text and hint ----------------------------
def test_given_a_401_then_the_error_carries_oxylabs_message_and_the_password_setting(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.results(), oxylabs_error(401, "Client not found"))

    with pytest.raises(ProviderAPIError) as caught:
        ox.collector.fetch(journal_job(parse=False))

    text = str(caught.value)
    assert text.startswith(f"oxylabs: GET /v1/queries/{JOB_ID}/results returned HTTP 401")
    assert "Client not found" in text
    assert "SOURCES__OXYLABS__PASSWORD" in text


def test_given_an_unknown_schedule_then_the_hint_names_it(http: HttpMocker, ox: Oxylabs) -> None:
    http.get(ASK.schedules(), schedules_list(SCHEDULE_ID))
    http.get(ASK.schedule(), oxylabs_error(404, "Schedule not found."))

    with pytest.raises(ProviderAPIError, match=f"schedule {SCHEDULE_ID} is unknown"):
        list(schedule_rows(ox.reader, {}))


def test_given_a_list_of_messages_then_they_are_joined_into_one_text() -> None:
    assert _oxylabs_error({"message": ["source: required", "pages: >= 1"]}) == (
        "source: required; pages: >= 1"
    )
    assert _oxylabs_error("<html>") is None


# -- submission: POST /v1/queries/batch ---------------------------------------------------------
def test_given_three_values_and_batches_of_two_then_two_tagged_batches_are_posted(
    http: HttpMocker, ox: Oxylabs
) -> None:
    ox.submitter.batch_size = 2
    http.post(ASK.batch(), [batch_response(["a", "b"]), batch_response(["c"], first_id=7)])

    report = ox.submitter.submit(["a", "b", "c", "a"], "query", {"source": "google_search"})

    bodies = [call.json() for call in http.calls(BATCH_PATH)]
    assert [body["query"] for body in bodies] == [["a", "b"], ["c"]]
    assert all(body["source"] == "google_search" for body in bodies)
    assert all(body["client_notes"].startswith(TAG_PREFIX) for body in bodies)
    assert (report.submitted, report.duplicates_in_input, len(report.batches)) == (3, 1, 2)
    assert {row["job_id"] for row in ox.journal.open_jobs()} == {
        "7300000000000000001",
        "7300000000000000002",
        "7",
    }


def test_given_a_400_then_the_batch_is_rejected_with_oxylabs_message(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.post(ASK.batch(), oxylabs_error(400, "geo_location: Invalid value."))

    report = ox.submitter.submit(["a"], "query", {"source": "google_search"})

    assert report.submitted == 0
    assert "geo_location: Invalid value." in report.rejected[0][1]


def test_given_a_500_then_the_batch_is_unknown_and_never_resent(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.post(ASK.batch(), oxylabs_error(500, "Internal Server Error"))

    report = ox.submitter.submit(["a"], "query", {"source": "google_search"})

    assert len(report.unknown) == 1
    assert report.submitted == 0
    assert len(http.calls(BATCH_PATH)) == 1, "a POST that may have created jobs is not retried"


# -- Scheduler: big integers, deletes, run jobs -------------------------------------------------
def test_given_scheduler_ids_above_2_pow_53_then_rows_keep_them_exactly_and_mark_deletes(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.schedules(), schedules_list(SCHEDULE_ID))
    http.get(ASK.schedule(), schedule_detail(active=False))
    state: dict[str, Any] = {"schedule_ids": [str(SCHEDULE_ID), "3809594044634915210"]}

    (rows,) = list(schedule_rows(ox.reader, state))

    assert rows[0]["schedule_id"] == SCHEDULE_ID
    assert rows[0]["active"] is False
    assert rows[0]["total_job_count"] == 2
    assert rows[1] == {"schedule_id": 3809594044634915210, "_deleted": True}
    assert state["schedule_ids"] == [str(SCHEDULE_ID)]


def test_given_a_run_then_its_jobs_are_rows_and_created_ones_are_queued_for_collection(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.schedules(), schedules_list(SCHEDULE_ID))
    failed_create = run_job(job_id=SCHEDULER_JOB_ID + 1, create_status_code=400)
    http.get(ASK.runs(), runs_response(25037485, run_job(), failed_create))

    (item,) = list(scheduled_jobs(ox.reader, ox.journal))

    rows = item.data
    assert [r["job_id"] for r in rows] == [str(SCHEDULER_JOB_ID), str(SCHEDULER_JOB_ID + 1)]
    assert item.meta.hints["table_name"] == "schedule_runs"
    assert item.meta.hints["primary_key"] == ("schedule_id", "run_id", "job_id")
    assert [j["job_id"] for j in ox.journal.open_jobs()] == [str(SCHEDULER_JOB_ID)]


def test_given_a_schedule_id_as_a_float_then_it_is_refused_as_malformed(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.schedules(), raw_json('{"schedules": [3.809594044634907e18]}'))

    with pytest.raises(ProviderAPIError, match="malformed response: schedule_id"):
        list(schedule_rows(ox.reader, {}))


# -- callbacker IPs --------------------------------------------------------------------------
def test_given_the_callbacker_list_then_it_is_fetched_once_per_ttl(
    http: HttpMocker, ox: Oxylabs
) -> None:
    http.get(ASK.callbacker_ips(), HttpResponse(json={"ips": ["192.0.2.10", "192.0.2.11"]}))
    now = [0.0]
    ips = CallbackerIPs(ox.reader, ttl=60, clock=lambda: now[0])

    allowed = (ips.allowed("192.0.2.11"), ips.allowed("198.51.100.1"))
    now[0] = 61
    ips.allowed("192.0.2.10")

    assert allowed == (True, False)
    assert len(http.calls(ASK.callbacker_ips().path)) == 2


# -- hints and transforms -----------------------------------------------------------------------
def test_given_the_source_then_each_resource_declares_its_key_and_merge(tmp_path: Path) -> None:
    source = oxylabs_source(
        username="u", password="p", base_url="http://api.test", journal_path=str(tmp_path / "j")
    )

    schemas = {name: r.compute_table_schema() for name, r in source.resources.items()}

    assert set(schemas) == {"jobs", "schedules"}
    for name, key in (("jobs", "id"), ("schedules", "schedule_id")):
        assert schemas[name]["write_disposition"] == "merge"
        keys = [c for c, hints in schemas[name]["columns"].items() if hints.get("primary_key")]
        assert keys == [key]
    assert schemas["schedules"]["columns"]["_deleted"]["hard_delete"] is True
    assert {e.path for e in ENDPOINTS} >= {BATCH_PATH}


def test_given_a_journal_row_then_the_ledger_row_splits_query_and_url_and_times_are_utc() -> None:
    row = {
        "job_id": JOB_ID,
        "status": "done",
        "kind": "url",
        "value": "https://shop.example.com/1",
        "params": '{"source": "universal"}',
        "origin": "submit",
        "fingerprint": "f",
        "attempt": 0,
        "batch_id": "b",
        "fault_code": None,
        "fault_reason": None,
        "result_pages": 1,
        "submitted_at": "2025-03-01T09:00:02Z",
        "finished_at": "2025-03-01 09:00:15",
        "callback_at": None,
        "resubmitted_as": None,
        "version": 4,
    }

    ledger = ledger_row(row)

    assert (ledger["id"], ledger["query"], ledger["url"]) == (JOB_ID, None, row["value"])
    assert ledger["source"] == "universal"
    assert ledger["_version"] == 4
    assert ledger["finished_at"] == oxylabs_time("2025-03-01 09:00:15")
    assert ledger["finished_at"].isoformat() == "2025-03-01T09:00:15+00:00"


def test_given_a_page_with_an_undocumented_field_then_it_lands_as_a_column() -> None:
    page = ResultsResponseBuilder().with_page("x", is_render_forced=False).pages[0]

    row = result_row(journal_job(), page)

    assert row["is_render_forced"] is False
    assert row["created_at"].isoformat() == "2025-03-01T09:00:01+00:00"
    assert row["parser_type"] is None, "an empty parser_type is no parser"
