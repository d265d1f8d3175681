"""The provider sandboxes the server hosts."""

from __future__ import annotations

from typing import Any

from scrapesync.sandbox.base import ProviderAPI
from scrapesync.sandbox.opencx import OpenCXAPI
from scrapesync.sandbox.outscraper import OutscraperAPI
from scrapesync.sandbox.oxylabs import OxylabsAPI
from scrapesync.sandbox.reworkd import ReworkdAPI
from scrapesync.sandbox.scrapewise import ScrapewiseAPI

# one line per provider sandbox (README "Adding a provider")
SANDBOXES: tuple[type[ProviderAPI], ...] = (
    ReworkdAPI,
    OutscraperAPI,
    ScrapewiseAPI,
    OxylabsAPI,
    OpenCXAPI,
)


def sandbox_classes() -> dict[str, type[ProviderAPI]]:
    """Every provider sandbox class by provider name."""
    return {api.name: api for api in SANDBOXES}


def default_providers(options: dict[str, dict[str, Any]]) -> list[ProviderAPI]:
    """Every provider sandbox; `options` are keyed by provider (`{"reworkd": {...}}`)."""
    return [api(**options.get(api.name, {})) for api in SANDBOXES]
