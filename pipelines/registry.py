"""The providers scrapesync can sync, found rather than listed.

Every package under `scrapesync.sources` with a `provider` module exporting `PROVIDER` (a
`scrapesync.sources.common.provider.Provider`) is a provider; packages installed apart from
scrapesync add theirs through the `scrapesync.providers` entry-point group. The shared layers
(runner, unified model, checks, status, command line, webhook intake) read this table and name
no provider. README "Adding a provider" walks through it.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from importlib.metadata import entry_points

from scrapesync import sources
from scrapesync.sources.common.provider import Provider

ENTRY_POINT_GROUP = "scrapesync.providers"


def _discover() -> dict[str, Provider]:
    found: list[Provider] = []
    for package in pkgutil.iter_modules(sources.__path__):
        module = f"{sources.__name__}.{package.name}.provider"
        if package.ispkg and importlib.util.find_spec(module) is not None:
            provider = getattr(importlib.import_module(module), "PROVIDER", None)
            if isinstance(provider, Provider):
                found.append(provider)
    found.extend(ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP))
    return {provider.name: provider for provider in sorted(found, key=lambda p: p.name)}


PROVIDERS: dict[str, Provider] = _discover()


def get(name: str) -> Provider:
    """The provider called `name`, or a ValueError that lists the known ones."""
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider {name!r}; scrapesync knows: {known}") from None
