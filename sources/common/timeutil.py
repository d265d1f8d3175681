"""Time as the providers send it: ISO 8601 parsing (naive = UTC) and the `...Z` filter form."""

from __future__ import annotations

from typing import Any

import pendulum


def parse_datetime(value: str | pendulum.DateTime | None) -> pendulum.DateTime | None:
    """Parse an ISO 8601 date or date-time; naive values are taken as UTC."""
    if value is None or isinstance(value, pendulum.DateTime):
        return value
    parsed = pendulum.parse(value, tz="UTC")
    if not isinstance(parsed, pendulum.DateTime):
        parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")  # type: ignore[union-attr]
    return parsed.in_timezone("UTC")


def is_iso_time(value: Any) -> bool:
    """Whether `value` is an ISO 8601 date or date-time text, as `parse_datetime` reads it."""
    if not isinstance(value, str):
        return False
    try:
        parse_datetime(value)
    except ValueError:  # pendulum's ParserError included
        return False
    return True


def iso_z(value: pendulum.DateTime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC: the form providers' date filters document."""
    return value.in_timezone("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
