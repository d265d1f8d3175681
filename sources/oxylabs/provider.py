"""Oxylabs as the shared layers see it (runner, unified model, checks, status, CLI, intake)."""

from __future__ import annotations

from scrapesync.sources.common.provider import Provider
from scrapesync.sources.oxylabs import cli, model, oxylabs_source, post_load

PROVIDER = Provider(
    name="oxylabs",
    source=oxylabs_source,
    required=("username", "password"),
    post_load=post_load,
    actions=cli.register,
    runs=model.RUNS,
    checks=model.CHECKS,
    freshness=model.FRESHNESS,
    retention_hours=model.RETENTION_HOURS,
    webhook=cli.ListenHandler(),
)
