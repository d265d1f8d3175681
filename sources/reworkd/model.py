"""Reworkd's place in the unified model: `scrape_runs` mapping, completeness checks,
freshness columns and retention (read by the shared layers through `PROVIDER`).

No `scrape_runs` mapping: the API exposes outputs (records) only, never a job with a state or
timing; `outputs.root_job_id` names a job but nothing says whether it is running or finished,
so any row made from it would invent its state.
"""

from __future__ import annotations

from scrapesync.sources.common.provider import RunMapping, TotalCheck

RUNS: tuple[RunMapping, ...] = ()

CHECKS: tuple[TotalCheck, ...] = ()

# table -> the column that dates a record, for the lag (now - newest record)
FRESHNESS: dict[str, str] = {"outputs": "update_date"}

# table -> how long the provider keeps the results of a finished async job (hours)
RETENTION_HOURS: dict[str, float] = {}

# what `scrapesync demo` shows after its syncs
SAMPLE_QUERY = """
SELECT group_id, count(*) AS live_outputs, round(avg(data__price), 2) AS avg_price,
       max(update_date) AS newest_change
FROM reworkd.outputs GROUP BY group_id ORDER BY group_id
"""
