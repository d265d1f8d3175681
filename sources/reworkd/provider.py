"""Reworkd as the shared layers see it (runner, unified model, checks, status, CLI, intake)."""

from __future__ import annotations

from scrapesync.sources.common.provider import Provider
from scrapesync.sources.reworkd import model, reworkd_source
from scrapesync.sources.reworkd.resources import post_load

PROVIDER = Provider(
    name="reworkd",
    source=reworkd_source,
    required=("api_key", "group_ids"),
    post_load=post_load,
    runs=model.RUNS,
    checks=model.CHECKS,
    freshness=model.FRESHNESS,
    retention_hours=model.RETENTION_HOURS,
    sample_query=model.SAMPLE_QUERY,
)
