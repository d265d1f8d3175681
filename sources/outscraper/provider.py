"""Outscraper as the shared layers see it (runner, unified model, checks, status, CLI, intake)."""

from __future__ import annotations

from scrapesync.sources.common.provider import Provider
from scrapesync.sources.outscraper import cli, model, outscraper_source
from scrapesync.sources.outscraper.resources import post_load

PROVIDER = Provider(
    name="outscraper",
    source=outscraper_source,
    post_load=post_load,
    actions=cli.add_commands,
    runs=model.RUNS,
    checks=model.CHECKS,
    freshness=model.FRESHNESS,
    retention_hours=model.RETENTION_HOURS,
    webhook=cli.webhook_handler(),
)
