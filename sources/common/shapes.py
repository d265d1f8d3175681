"""Field names a provider may send that dlt would merge, drop or take for its own.

dlt normalizes every key to a column name (snake_case by default) and keeps one value per
column: two keys of one record that normalize alike (`Price` and `price`, `a b` and `a-b`,
two CJK keys that both become `x`) lose one value silently in a row, and fail an Arrow table
(`NameNormalizationCollision`). A key that normalizes to one of dlt's own columns (`_dlt_id`,
`_dlt_load_id`, any `_dlt_*`) overwrites it: two rows then share one row id. A key named like
a column the connector adds itself (`group_id`, `_version`, ...) would overwrite that.

The rule, applied before dlt sees a record (README, "Faults, bad answers and secrets"):

* a key that normalizes to a dlt name or to a name in `own` lands in `user_<name>`
  (`_dlt_id` -> `user_dlt_id`, `group_id` -> `user_group_id`);
* when several keys normalize to one name, the key already spelled as that name keeps it
  (else the first in sort order), and each other one lands in `<name>_<h>`, `<h>` being the
  first 8 hex digits of the SHA-1 of its path as sent (`Price` beside `price` ->
  `price_<h>`), so the same key always gets the same column;
* every other key is left as it is: dlt normalizes it as usual.

Nothing here names a provider: each provider applies it to its rows or column names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import dlt
from dlt.common.normalizers.naming.naming import NamingConvention
from dlt.common.normalizers.naming.snake_case import NamingConvention as SnakeCase

DLT_PREFIX = "_dlt"
USER_PREFIX = "user_"
# dlt's relational normalizer stores an empty or blank key under this name
EMPTY_KEY = "_empty"


def current_naming() -> NamingConvention:
    """The naming convention of the schema being extracted; snake_case outside a pipeline."""
    try:
        return dlt.current.source_schema().naming
    except Exception:  # no pipeline context (unit use): dlt's default convention
        return SnakeCase()


def path_hash(path: Sequence[str]) -> str:
    """8 hex digits that tell apart the keys of one name (stable: derived from the key)."""
    text = "\x1f".join(path)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:8]


def _is_dlt(name: str) -> bool:
    return name.startswith(DLT_PREFIX)


def _renamed(
    normalized: str, path: Sequence[str], claimed: bool, taken: set[str], naming: NamingConvention
) -> str:
    """A free, already normalized name for a key that may not keep `normalized`."""
    head, _, last = normalized.rpartition("__")
    if claimed:  # a dlt or connector name: the user's own version of it
        base = naming.normalize_identifier(USER_PREFIX + last.lstrip("_"))
        candidate = f"{head}__{base}" if head else base
    else:
        candidate = naming.normalize_path(f"{normalized}_{path_hash(path)}")
    while candidate in taken:  # practically never: another key already took it
        candidate = naming.normalize_path(f"{candidate}_{path_hash([*path, candidate])}")
    return candidate


def _plan(
    entries: Sequence[tuple[tuple[str, ...], str, bool]],
    own: Collection[str],
    naming: NamingConvention,
) -> dict[tuple[str, ...], str]:
    """Which entries must be renamed, and to what.

    `entries`: (path as sent, normalized name, spelled exactly as normalized); a name starting
    with `[]` is a child table's (a list), apart from the columns. The result maps the path of
    each entry to rename to its new normalized name (with its `[]` kind).
    """
    groups: dict[str, list[tuple[tuple[str, ...], bool]]] = {}
    for path, normalized, exact in entries:
        groups.setdefault(normalized, []).append((path, exact))
    taken = set(groups) | set(own)
    renames: dict[tuple[str, ...], str] = {}
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda member: (not member[1], member[0]))
        kind, normalized = ("[]", key[2:]) if key.startswith("[]") else ("", key)
        claimed = normalized in own or _is_dlt(normalized)
        losers = members if claimed else members[1:]
        for path, _ in losers:
            # a list and a column renamed alike would share one key of the rebuilt object
            kept = {name.removeprefix("[]") for name in taken}
            new = _renamed(normalized, path, claimed, kept, naming)
            taken.add(kind + new)
            renames[path] = kind + new
    return renames


def safe_column_names(
    names: Sequence[str], own: Collection[str] = (), naming: NamingConvention | None = None
) -> list[str]:
    """The record-derived column names (nested paths joined by `__`) of one Arrow table,
    renamed where dlt would merge two of them or take one for its own. `own`: the columns the
    connector adds itself (normalized), which no record's column may take."""
    naming = naming or current_naming()
    entries = [
        ((name,), naming.normalize_path(name), naming.normalize_path(name) == name)
        for name in names
    ]
    renames = _plan(entries, own, naming)
    return [renames.get((name,), name) for name in names]


def _leaves(
    row: Mapping[str, Any], naming: NamingConvention
) -> Iterable[tuple[tuple[str, ...], str, bool]]:
    """(path as sent, column or child table name dlt gives it, spelled as normalized) of every
    key of one row, the way dlt's relational normalizer flattens nested objects."""
    stack: list[tuple[Mapping[str, Any], tuple[str, ...], tuple[str, ...], bool]] = [
        (row, (), (), True)
    ]
    while stack:
        current, raw, normalized, exact = stack.pop()
        for key, value in current.items():
            name = naming.normalize_identifier(key) if key and not key.isspace() else EMPTY_KEY
            path, names = (*raw, key), (*normalized, name)
            spelled = exact and name == key
            if isinstance(value, dict) and value:
                stack.append((value, path, names, spelled))
                continue
            # a list becomes a child table: its name lives apart from the columns
            kind = "[]" if isinstance(value, list) else ""
            yield path, kind + "__".join(names), spelled


def safe_row(
    row: Mapping[str, Any], own: Collection[str] = (), naming: NamingConvention | None = None
) -> dict[str, Any]:
    """A copy of one record (a dict row, nested objects and lists of objects included) whose
    keys dlt cannot merge or take for its own. `own`: the top-level columns the connector
    sets itself (normalized); a record's key that normalizes to one of them is renamed
    (`user_<name>`), so the connector's value and the record's are both kept."""
    naming = naming or current_naming()
    row = _claimed_whole(row, own, naming)
    renames = _plan(list(_leaves(row, naming)), own, naming)
    return _rebuilt(row, (), renames, naming)


def _claimed_whole(
    row: Mapping[str, Any], own: Collection[str], naming: NamingConvention
) -> Mapping[str, Any]:
    """A top-level object or list under a dlt or connector name, renamed as a whole
    (`user_<name>`): renaming its leaves would leave the key, and the connector's own value
    (set after) would replace it."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = naming.normalize_identifier(key) if key and not key.isspace() else EMPTY_KEY
        if isinstance(value, (dict, list)) and value and (name in own or _is_dlt(name)):
            new = naming.normalize_identifier(USER_PREFIX + name.lstrip("_"))
            while new in row or new in out:
                new = naming.normalize_identifier(f"{new}_{path_hash([key, new])}")
            out[new] = value
        else:
            out[key] = value
    return out


def _rebuilt(
    value: Mapping[str, Any],
    path: tuple[str, ...],
    renames: Mapping[tuple[str, ...], str],
    naming: NamingConvention,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        here = (*path, key)
        new = renames.get(here)
        name = key if new is None else new.removeprefix("[]").rpartition("__")[2]
        if new is None and (not key or key.isspace()):
            name = EMPTY_KEY  # dlt 1.31 puts a list under an empty key into the parent table
        if isinstance(item, dict) and item:
            out[name] = _rebuilt(item, here, renames, naming)
        elif isinstance(item, list):
            out[name] = _list(item, naming)
        else:
            out[name] = item
    return out


def _list(items: list[Any], naming: NamingConvention) -> list[Any]:
    """Objects in a list are rows of a child table, each with its own names."""
    return [
        safe_row(item, (), naming)
        if isinstance(item, dict)
        else _list(item, naming)
        if isinstance(item, list)
        else item
        for item in items
    ]
