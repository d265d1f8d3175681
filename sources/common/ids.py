"""One check for every id that goes into an API path: validated per its documented format,
then URL-escaped.

An id typed by a user (`scrapesync <provider> <action> ID`) or read from config becomes a path
segment. Unchecked, `../../admin/keys` walks out of the route (and takes the API key along),
`x?apiKey=evil&y=` adds a query string and `x#frag` cuts the path short. `path_id` refuses
anything that is not the provider's documented format (ASCII only: `str.isdigit` also accepts
"١٢٣"), bounded in length, and escapes what it returns, so a format that allows `.` or `~`
still yields one segment. The error (`InvalidIdError`, a `ValueError`) names the provider, the
action and the expected format; it is raised before any request is built, so nothing is sent.

Providers describe their own formats with `IdFormat` (next to their endpoint tables); the
shapes several providers share are here: `DIGITS`, `UUID`, `HEX32`, `OBJECT_ID`, `SLUG`.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace
from urllib.parse import quote

from scrapesync.sources.common.redact import redact

# how much of a refused id an error message quotes
SHOWN_LENGTH = 80
_FIELD_NAMES = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class IdFormat:
    """What one kind of id looks like.

    Attributes:
        what: the id's name in messages, e.g. "task id".
        pattern: regex the whole id must match (checked ASCII-only, `re.fullmatch`).
        description: the format in words, completing "the id is not ...", e.g. "a UUID".
        example: a valid id, shown in the error.
        max_length: longest id accepted (checked before the regex runs).
    """

    what: str
    pattern: str
    description: str
    example: str
    max_length: int = 64

    def named(self, what: str) -> IdFormat:
        """The same format under another name ("job id", "datasource id")."""
        return replace(self, what=what)


DIGITS = IdFormat(
    "id", r"[0-9]{1,20}", "a number of 1 to 20 ASCII digits", "7234563456789012345", 20
)
UUID = IdFormat(
    "id",
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff",
    "a UUID",
    "0b5f0b3e-2c1d-4e6f-9a7b-1c2d3e4f5a6b",
    36,
)
HEX32 = IdFormat("id", r"[0-9a-f]{32}", "an id of 32 lowercase hex characters", "9f" * 16, 32)
OBJECT_ID = IdFormat(
    "id", r"[0-9a-fA-F]{24}", "an id of 24 hex characters", "65a3b1c8d4e7f291a3b5c6d8", 24
)
# an opaque id of undocumented shape: letters, digits, `-`, `_`, `.`, `~` (URL-unreserved), not
# starting with `.` (no `.` or `..` segment), at most 128 characters
SLUG = IdFormat(
    "id",
    r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}",
    "an id of 1 to 128 letters, digits, '-', '_', '.' or '~' (not starting with '.')",
    "g-7f3a",
    128,
)


class InvalidIdError(ValueError):
    """An id that is not in its documented format: nothing was sent."""

    def __init__(
        self, provider: str, action: str, fmt: IdFormat, value: object, why: str, fix: str = ""
    ) -> None:
        self.provider, self.action, self.format = provider, action, fmt
        shown = redact(repr(value) if not isinstance(value, str) else repr(value[:SHOWN_LENGTH]))
        if isinstance(value, str) and len(value) > SHOWN_LENGTH:
            shown += "..."
        fix = f": fix {fix}" if fix else ""
        super().__init__(
            f"{provider}: {action}: {fmt.what} {shown} is not {fmt.description}{fix} ({why}; "
            f"e.g. {fmt.example}). Nothing was sent."
        )


def problem(value: object, fmt: IdFormat) -> str | None:
    """Why `value` is not an id of `fmt`, or None when it is one."""
    if not isinstance(value, str):
        return f"not text but {type(value).__name__}"
    if not value:
        return "empty"
    if len(value) > fmt.max_length:
        return f"{len(value)} characters, at most {fmt.max_length}"
    if not value.isascii() or not value.isprintable():
        return "holds non-ASCII or control characters"
    bad = sorted({c for c in value if c not in _UNRESERVED})
    if not re.fullmatch(fmt.pattern, value, flags=re.ASCII):
        return f"holds {''.join(bad)!r}" if bad else "does not match the format"
    return None


# the URL-unreserved characters: what may stand in a path segment as it is
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def checked_id(value: object, fmt: IdFormat, *, provider: str, action: str, fix: str = "") -> str:
    """`value` checked against `fmt`, not escaped: for query values and SQL parameters, which
    their own encoders escape.

    Surrounding whitespace (a pasted id) is dropped; anything else that is not the format
    raises `InvalidIdError` naming `provider`, `action`, the expected format and what to `fix`.
    """
    if isinstance(value, str):
        value = value.strip(" \t\r\n")
    why = problem(value, fmt)
    if why is None and value in (".", ".."):  # never one path segment, whatever the format
        why = "a relative path segment"
    if why is not None:
        raise InvalidIdError(provider, action, fmt, value, why, fix)
    assert isinstance(value, str)  # problem() refused every other type
    return value


def path_id(value: object, fmt: IdFormat, *, provider: str, action: str, fix: str = "") -> str:
    """`value` checked against `fmt` (see `checked_id`) and URL-escaped: one path segment."""
    return quote(checked_id(value, fmt, provider=provider, action=action, fix=fix), safe="")


def fill_path(template: str, *, provider: str, action: str, **ids: tuple[object, IdFormat]) -> str:
    """`template` (`/tasks/{task_id}`) with each `{name}` replaced by its checked, escaped id.

    `ids` maps each placeholder to (value, format); a placeholder without one is a bug.
    """
    names = set(_FIELD_NAMES.findall(template))
    if names != set(ids):
        raise TypeError(f"{template}: placeholders {sorted(names)} but ids {sorted(ids)}")
    escaped = {
        name: path_id(value, fmt, provider=provider, action=action)
        for name, (value, fmt) in ids.items()
    }
    return template.format(**escaped)
