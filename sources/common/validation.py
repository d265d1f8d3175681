"""Checks on decoded items: times that must be times, fields the docs do not list."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

from scrapesync.sources.common.errors import malformed_item
from scrapesync.sources.common.timeutil import is_iso_time


def check_times(
    provider: str, path: str, item: dict[str, Any], fields: Iterable[str], what: str
) -> None:
    """Refuse an item whose time `fields` hold something else than an ISO 8601 time; null is
    fine (not started or finished yet). Such fields order lists and set watermarks: a guess
    would skip or misplace rows."""
    for name in fields:
        value = item.get(name)
        if value is not None and not is_iso_time(value):
            detail = f"{what} {item.get('id')} has `{name}` {value!r}, not an ISO 8601 time"
            raise malformed_item(provider, path, detail)


def undocumented(item: dict[str, Any], documented: Container[str]) -> dict[str, Any]:
    """The fields of `item` its docs do not list: schema drift, kept as new columns."""
    return {name: value for name, value in item.items() if name not in documented}
