"""Scheduler: schedules, their runs, and the jobs the runs create (api-notes §4.6).

Scheduler answers carry `schedule_id`, `run_id` and job `id` as unquoted JSON integers above
2^53 (e.g. 3809594044634907291). `sources.common` decodes every body once with orjson, which
reads integers exactly into Python ints (no float on the way); they are stored as BIGINT
(schedule_id, run_id) and job ids as text, so they join with `results.job_id` (the push-pull
API spells job ids as strings).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.oxylabs.collect import oxylabs_time
from scrapesync.sources.oxylabs.journal import Journal
from scrapesync.sources.oxylabs.settings import SCHEDULE_PATH, SCHEDULE_RUNS_PATH, SCHEDULES_PATH


def _exact_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        # a float here would mean a lossy parser somewhere: refuse rather than store a wrong id
        raise ProviderAPIError(
            "oxylabs",
            "GET",
            SCHEDULES_PATH,
            200,
            f"malformed response: {what} {value!r} is not an integer",
            "report it to Oxylabs; nothing of this sync was loaded",
        )
    return value


def list_schedule_ids(reader: ProviderRESTClient) -> list[int]:
    body = reader.get(SCHEDULES_PATH).json()
    return [_exact_int(sid, "schedule_id") for sid in body.get("schedules") or []]


def schedule_rows(reader: ProviderRESTClient, state: dict[str, Any]) -> Iterator[Any]:
    """Rows of `schedules`; ids listed last sync and gone now are yielded as deletes."""
    ids = list_schedule_ids(reader)
    rows = []
    for sid in ids:
        detail = reader.get(SCHEDULE_PATH.format(schedule_id=sid)).json()
        stats = detail.get("stats") or {}
        rows.append(
            {
                "schedule_id": _exact_int(detail.get("schedule_id", sid), "schedule_id"),
                "active": detail.get("active"),
                "items_count": detail.get("items_count"),
                "cron": detail.get("cron"),
                "end_time": oxylabs_time(detail.get("end_time")),
                "next_run_at": oxylabs_time(detail.get("next_run_at")),
                "total_job_count": stats.get("total_job_count"),
                "job_create_outcomes": stats.get("job_create_outcomes"),
                "job_result_outcomes": stats.get("job_result_outcomes"),
                "_deleted": False,
            }
        )
    # state keeps ids as strings: dlt state is JSON and must not round big ints through floats
    seen = {int(sid) for sid in state.get("schedule_ids", [])}
    rows.extend({"schedule_id": sid, "_deleted": True} for sid in sorted(seen - set(ids)))
    state["schedule_ids"] = [str(sid) for sid in ids]
    if rows:
        yield rows


def scheduled_jobs(
    reader: ProviderRESTClient, journal: Journal, columns: dict[str, Any]
) -> Iterator[Any]:
    """`schedule_runs` rows; every run job is registered in the journal for collection."""
    for sid in list_schedule_ids(reader):
        body = reader.get(SCHEDULE_RUNS_PATH.format(schedule_id=sid)).json()
        rows, register = [], []
        for run in body.get("runs") or []:
            run_id = _exact_int(run.get("run_id"), "run_id")
            for position, job in enumerate(run.get("jobs") or []):
                job_id = str(_exact_int(job.get("id"), "job id"))
                status = job.get("result_status") or "pending"
                rows.append(
                    {
                        "schedule_id": sid,
                        "run_id": run_id,
                        "job_id": job_id,
                        "create_status_code": job.get("create_status_code"),
                        "result_status": status,
                        "created_at": oxylabs_time(job.get("created_at")),
                        "result_created_at": oxylabs_time(job.get("result_created_at")),
                        "success_rate": run.get("success_rate"),
                    }
                )
                if job.get("create_status_code") in (None, 200, 201, 202):
                    register.append((job_id, f"schedule:{sid}:{run_id}", position, "pending"))
        journal.add_external_jobs(register)
        if rows:
            yield dlt.mark.with_hints(
                rows,
                dlt.mark.make_hints(
                    table_name="schedule_runs",
                    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
                    primary_key=("schedule_id", "run_id", "job_id"),
                    columns=columns,
                ),
                create_table_variant=True,
            )
