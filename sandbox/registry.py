"""The provider sandboxes the server hosts, and the keys the demo uses for them."""

from __future__ import annotations

from typing import Any

from scrapesync.sandbox.base import ProviderAPI
from scrapesync.sandbox.opencx import OpenCXAPI
from scrapesync.sandbox.outscraper import OutscraperAPI
from scrapesync.sandbox.oxylabs import OxylabsAPI
from scrapesync.sandbox.reworkd import ReworkdAPI
from scrapesync.sandbox.scrapewise import ScrapewiseAPI


def default_providers(options: dict[str, dict[str, Any]]) -> list[ProviderAPI]:
    """Every provider sandbox; `options` are keyed by provider (`{"reworkd": {...}}`)."""
    return [
        ReworkdAPI(**options.get("reworkd", {})),
        OutscraperAPI(**options.get("outscraper", {})),
        ScrapewiseAPI(**options.get("scrapewise", {})),
        OxylabsAPI(**options.get("oxylabs", {})),
        OpenCXAPI(**options.get("opencx", {})),
    ]
