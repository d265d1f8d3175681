"""Query semantics of the Scrapewise sandbox: ObjectIds, `filters` JSON, Spring sort and pages.

What the API does with `filters`, `sort`, `page` and `size` (docs/scrapewise.md#pagination and
#filters), apart from the routes (sandbox/scrapewise.py) and the account (scrapewise_data.py).
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson


def is_object_id(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{24}", value or "") is not None


def parse_filters(text: str | None) -> dict[str, Any]:
    """`filters` query parameter: URL-decoded JSON object; empty means no filter."""
    if not text:
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(parsed, dict):
        raise ValueError("filters must be a JSON object")
    return parsed


_OPS = {
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$ne": lambda a, b: a != b,
    "$in": lambda a, b: a in b,
    "equals": lambda a, b: a == b,
    "notEquals": lambda a, b: a != b,
    "contains": lambda a, b: str(b).lower() in str(a).lower(),
    "greaterThan": lambda a, b: a is not None and a > b,
    "lessThan": lambda a, b: a is not None and a < b,
}


def _matches(row: dict[str, Any], condition: dict[str, Any]) -> bool:
    for key, wanted in condition.items():
        if key in ("$and", "$or", "$nor"):
            results = [_matches(row, part) for part in wanted]
            ok = all(results) if key == "$and" else any(results)
            if (key == "$nor") == ok:
                return False
            continue
        value = row.get(key)
        if not isinstance(wanted, dict):
            if value != wanted:
                return False
            continue
        # the per-column envelope dialect or Mongo-style operators (docs/scrapewise.md#filters)
        ops = {wanted["$op"]: wanted.get("$value")} if "$op" in wanted else wanted
        for op, operand in ops.items():
            if op not in _OPS:
                raise ValueError(f"unknown operator {op!r}")
            if not _OPS[op](value, operand):
                return False
    return True


def filter_rows(rows: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    condition = parse_filters(text)
    return [row for row in rows if _matches(row, condition)] if condition else list(rows)


def sort_rows(rows: list[dict[str, Any]], sorts: list[str]) -> list[dict[str, Any]]:
    """Spring `sort=field,dir` (repeatable); stable, None first."""
    ordered = list(rows)
    for spec in reversed(sorts):
        name, _, direction = spec.partition(",")
        ordered.sort(
            key=lambda row: (0,) if row.get(name) is None else (1, row[name]),
            reverse=direction.lower() == "desc",
        )
    return ordered


def spring_page(rows: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
    """Spring's `Page<T>` with the framework's extra fields (docs/scrapewise.md#pagination)."""
    total = len(rows)
    pages = math.ceil(total / size)
    content = rows[page * size : (page + 1) * size]
    return {
        "content": content,
        "totalElements": total,
        "totalPages": pages,
        "size": size,
        "number": page,
        "numberOfElements": len(content),
        "first": page == 0,
        "last": page >= pages - 1,
        "empty": not content,
        "pageable": {"pageNumber": page, "pageSize": size, "offset": page * size},
        "sort": {"sorted": True, "unsorted": False, "empty": False},
    }
