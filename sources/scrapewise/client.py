"""Scrapewise HTTP client: the error envelope and hints, the client, and the reads it serves.

Every call goes through `scrapesync.sources.common.client.build_client` (dlt's RESTClient over
dlt's retrying session: 429 honouring `Retry-After`, 5xx and resets retried, one
`ProviderAPIError` type). Routes come from the endpoint table in `settings.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import orjson
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import PageNumberPaginator

from scrapesync.sources.common.client import ProviderRESTClient, build_client
from scrapesync.sources.common.errors import ProviderSpec, malformed_response
from scrapesync.sources.common.ids import OBJECT_ID, checked_id, fill_path
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.scrapewise.settings import (
    DELETE_DATA,
    GROUP_DATA,
    GROUP_LIST,
    JOB_ERRORS,
    LOAD_HISTORY,
    MERGE,
    OBJECT_ID_PATTERN,
    PREVIEW_DELETE,
    RUN,
    RUN_ROW_FIELD,
    SCRAPER,
    SCRAPER_LIST,
    STOP,
    Endpoint,
)

PROVIDER = "scrapewise"


def rfc7807_error(body: Any) -> str | None:
    """`{type,title,status,detail,instance,correlationId,code}` (docs/scrapewise.md#errors).

    Shapes vary (the SDK's tests use `{"message": ...}` and `{"code": ...}`; gateways send
    HTML), so the detail, message or title is taken with the machine code appended.
    """
    if not isinstance(body, dict):
        return None
    text = body.get("detail") or body.get("message") or body.get("title")
    code = body.get("code")
    correlation = body.get("correlationId")
    parts = [str(text) if text else None, f"code {code}" if code else None]
    message = " ".join(f"[{part}]" if part.startswith("code") else part for part in parts if part)
    if message and correlation:
        message += f" (correlationId {correlation})"
    return message or None


def path_pattern(endpoint: Endpoint) -> str:
    """A regex of the endpoint's path whose named groups are its `{placeholders}`."""
    parts = re.split(r"\{(\w+)\}", endpoint.path)
    return (
        "".join(
            f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part)
            for index, part in enumerate(parts)
        )
        + "$"
    )


RUN_UNKNOWN = (
    "no run with that id for this key: take the id from the `jobs` table (24 hex characters); "
    "a run whose preview token expired needs a new preview"
)
SCRAPER_UNKNOWN = (
    "scraper {scraper_id} does not exist for this key: check `sources.scrapewise.scraper_ids` "
    "(env SOURCES__SCRAPEWISE__SCRAPER_IDS)"
)
# Scrapewise answers 400, not 404, for an id it does not know (docs/scrapewise.md#errors).
# Most specific first: the scraper path also matches `/api/scraper/data`.
UNKNOWN_ID_HINTS: tuple[tuple[Endpoint, str], ...] = (
    (
        JOB_ERRORS,
        "run {job_id} is not visible in group {group_id} for this key (deleted, or the group "
        "belongs to another customer); run the sync again",
    ),
    (
        LOAD_HISTORY,
        "the run-history filter was refused: check `sources.scrapewise.group_ids` and "
        "`sources.scrapewise.scraper_ids` (24-hex ids, env SOURCES__SCRAPEWISE__GROUP_IDS)",
    ),
    (MERGE, "group {group_id} is unknown to this key, or a run id is not a run of that group"),
    (
        GROUP_DATA,
        "group {group_id} does not exist for this key: check `sources.scrapewise.group_ids` "
        "(env SOURCES__SCRAPEWISE__GROUP_IDS)",
    ),
    (DELETE_DATA, RUN_UNKNOWN),
    (PREVIEW_DELETE, RUN_UNKNOWN),
    (
        RUN,
        "scraper {scraper_id} is unknown to this key, disabled, or already RUNNING or PENDING: "
        "stop it first (`scrapesync scrapewise stop {scraper_id}`) or wait",
    ),
    (STOP, SCRAPER_UNKNOWN),
    (SCRAPER, SCRAPER_UNKNOWN),
)

SPEC = ProviderSpec(
    name=PROVIDER,
    parse_error=rfc7807_error,
    not_found_hints=tuple((path_pattern(endpoint), hint) for endpoint, hint in UNKNOWN_ID_HINTS),
)


def make_client(
    api_key: str, base_url: str, stats: RequestStats | None = None
) -> ProviderRESTClient:
    """Bearer `sw_live_...` key; Spring pages (0-based `page`, `totalPages`) in `content`."""
    if not api_key or not api_key.strip():
        raise ValueError(
            "scrapewise: no API key: set `sources.scrapewise.api_key` (.dlt/secrets.toml or env "
            "SOURCES__SCRAPEWISE__API_KEY); keys look like sw_live_<prefix>.<secret>"
        )
    return build_client(
        SPEC,
        base_url.rstrip("/"),
        BearerTokenAuth(token=api_key.strip()),
        paginator=PageNumberPaginator(base_page=0, page_param="page", total_path="totalPages"),
        data_selector="content",
        stats=stats,
    )


# Scrapewise ids are MongoDB ObjectIds (settings.OBJECT_ID_PATTERN, docs/scrapewise.md)
SCRAPEWISE_ID = replace(OBJECT_ID, pattern=OBJECT_ID_PATTERN)
# the id each path placeholder holds, as messages name it
ID_NAMES = {"group_id": "group id", "job_id": "run id", "scraper_id": "scraper id"}


def check_object_ids(
    ids: Iterable[str], what: str, setting: str, action: str = "sync"
) -> list[str]:
    """Refuse ids that are not MongoDB ObjectIds before the API answers with a 500 (the shared
    id check, `scrapesync.sources.common.ids`); blank entries are skipped."""
    fmt = SCRAPEWISE_ID.named(what)
    return [
        checked_id(value, fmt, provider=PROVIDER, action=action, fix=setting)
        for value in ids
        if not isinstance(value, str) or value.strip()
    ]


def id_path(endpoint: Endpoint, action: str, **ids: str) -> str:
    """`endpoint`'s path with each id checked and URL-escaped by the shared id helper."""
    named = {name: (value, SCRAPEWISE_ID.named(ID_NAMES[name])) for name, value in ids.items()}
    return fill_path(endpoint.path, provider=PROVIDER, action=action, **named)


def as_list(body: Any) -> list[Any]:
    """Bare JSON arrays, or `{"content": [...]}` (the SDK accepts both: #pagination)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("content"), list):
        return list(body["content"])
    raise TypeError(f"expected a JSON array, got {type(body).__name__}")


def get_list(client: ProviderRESTClient, path: str, params: dict[str, Any] | None = None) -> Any:
    response = client.get(path, params=params)
    try:
        return as_list(response.json())
    except TypeError as exc:
        hint = "retry later or report it to Scrapewise"
        raise malformed_response(
            SPEC, response, str(exc), str(client.base_url), hint=hint
        ) from None


def list_groups(client: ProviderRESTClient) -> list[dict[str, Any]]:
    return list(get_list(client, GROUP_LIST.path))


def list_scrapers(client: ProviderRESTClient, group_id: str | None) -> list[dict[str, Any]]:
    params = {"groupId": group_id} if group_id else None
    return list(get_list(client, SCRAPER_LIST.path, params))


def get_scraper(client: ProviderRESTClient, scraper_id: str) -> dict[str, Any]:
    body = client.get(SCRAPER.url_path(scraper_id=scraper_id)).json()
    return body if isinstance(body, dict) else {}


def fetch_errors(client: ProviderRESTClient, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The failed links of one run: `List<LinkErrorDTO>`; `groupId` is the ownership check."""
    path = JOB_ERRORS.url_path(group_id=run["groupId"], job_id=run["id"])
    return [link for link in get_list(client, path) if isinstance(link, dict)]


def fetch_rows(
    client: ProviderRESTClient,
    group_id: str,
    page_size: int,
    sort: Sequence[str],
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Every row of a group (or of one run of it), in a stable order."""
    params: dict[str, Any] = {"size": page_size, "sort": list(sort)}
    if run_id is not None:
        params["filters"] = orjson.dumps({RUN_ROW_FIELD: run_id}).decode()
    rows: list[dict[str, Any]] = []
    for page in client.paginate(GROUP_DATA.url_path(group_id=group_id), params=params):
        rows.extend(row for row in page if isinstance(row, dict))
    return rows
