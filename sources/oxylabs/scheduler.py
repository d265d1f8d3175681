"""Scheduler: schedules, their runs, and the jobs the runs create (docs/oxylabs.md#scheduler).

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
from scrapesync.sources.oxylabs.journal import Journal
from scrapesync.sources.oxylabs.settings import (
    MERGE,
    RUNS_COLUMNS,
    SCHEDULE_PATH,
    SCHEDULE_RUNS_PATH,
    SCHEDULES_PATH,
)
from scrapesync.sources.oxylabs.transform import exact_int, run_job_row, schedule_row

# a run's job was created when its create status is one of these (or not stated)
CREATED: tuple[int | None, ...] = (None, 200, 201, 202)


def list_schedule_ids(reader: ProviderRESTClient) -> list[int]:
    body = reader.get(SCHEDULES_PATH).json()
    return [exact_int(sid, "schedule_id", SCHEDULES_PATH) for sid in body.get("schedules") or []]


def schedule_rows(reader: ProviderRESTClient, state: dict[str, Any]) -> Iterator[Any]:
    """Rows of `schedules`; ids listed last sync and gone now are yielded as deletes."""
    ids = list_schedule_ids(reader)
    rows = []
    for sid in ids:
        path = SCHEDULE_PATH.format(schedule_id=sid)
        rows.append(schedule_row(reader.get(path).json(), sid, path))
    # state keeps ids as strings: dlt state is JSON and must not round big ints through floats
    # (docs/dlt-behaviours.md, state)
    seen = {int(sid) for sid in state.get("schedule_ids", [])}
    rows.extend({"schedule_id": sid, "_deleted": True} for sid in sorted(seen - set(ids)))
    state["schedule_ids"] = [str(sid) for sid in ids]
    if rows:
        yield rows


def scheduled_jobs(reader: ProviderRESTClient, journal: Journal) -> Iterator[Any]:
    """`schedule_runs` rows; every run job is registered in the journal for collection."""
    for sid in list_schedule_ids(reader):
        path = SCHEDULE_RUNS_PATH.format(schedule_id=sid)
        body = reader.get(path).json()
        rows, register = [], []
        for run in body.get("runs") or []:
            for position, job in enumerate(run.get("jobs") or []):
                row = run_job_row(sid, run, job, path)
                rows.append(row)
                if job.get("create_status_code") in CREATED:
                    batch = f"schedule:{sid}:{row['run_id']}"
                    register.append((row["job_id"], batch, position, "pending"))
        journal.add_external_jobs(register)
        if rows:
            yield dlt.mark.with_hints(
                rows,
                dlt.mark.make_hints(
                    table_name="schedule_runs",
                    write_disposition=MERGE,
                    primary_key=("schedule_id", "run_id", "job_id"),
                    columns=RUNS_COLUMNS,
                ),
                create_table_variant=True,
            )
