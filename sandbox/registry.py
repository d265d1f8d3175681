"""The provider sandboxes the server hosts, and the keys the demo uses for them."""

from __future__ import annotations

from typing import Any

from sandbox.base import ProviderAPI
from sandbox.opencx import OpenCXAPI
from sandbox.reworkd import ReworkdAPI
from sandbox.scrapewise import ScrapewiseAPI


def default_providers(options: dict[str, dict[str, Any]]) -> list[ProviderAPI]:
    """Every provider sandbox; `options` are keyed by provider (`{"reworkd": {...}}`)."""
    return [
        ReworkdAPI(**options.get("reworkd", {})),
        ScrapewiseAPI(**options.get("scrapewise", {})),
        OpenCXAPI(**options.get("opencx", {})),
    ]
