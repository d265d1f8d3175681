"""The open.cx Crawl API as scrapesync calls it: one paced client, errors, paths and actions.

Errors come in Fastify's envelope `{statusCode, message, error}` (validation errors add
`code: FST_ERR_VALIDATION`, docs/opencx.md#errors); a 403 means the key is valid but lacks the
scope: `crawl:read` for reads, `crawl:write` for starting, cancelling, pausing or resuming
(docs/opencx.md#auth). Every path comes from the endpoint table, `settings.ENDPOINTS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

from scrapesync.sources.common.client import ProviderRESTClient, build_client
from scrapesync.sources.common.errors import ProviderAPIError, ProviderSpec
from scrapesync.sources.common.ids import UUID, checked_id, fill_path
from scrapesync.sources.common.pacing import RateLimiter, install_pacing
from scrapesync.sources.common.paginators import GuardedCursorPaginator
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.opencx.settings import (
    CURSOR_PARAM,
    DATASOURCE_STATUSES,
    ITEMS_SELECTOR,
    NEXT_CURSOR_PATH,
    UUID_PATTERN,
    endpoint,
)

PROVIDER = "opencx"
DATASOURCE_ARG = "the DATASOURCE_ID argument"
WRITE_SCOPE_HINT = (
    "this API key lacks the `crawl:write` scope, which starting, cancelling, pausing and "
    "resuming crawls need (syncing only needs `crawl:read`). Create a key with `crawl:write` "
    "under Settings -> Access in open.cx and use it for actions: `sources.opencx.api_key` "
    "(.dlt/secrets.toml or env SOURCES__OPENCX__API_KEY)"
)


def _fastify_error(body: Any) -> str | None:
    """`{"statusCode": 400, "code": "FST_ERR_VALIDATION", "error": ..., "message": ...}`."""
    if not isinstance(body, dict):
        return None
    message = body.get("message") or body.get("error")
    if not message:
        return None
    code = body.get("code")
    return f"{message} ({code})" if code else str(message)


@dataclass(frozen=True)
class OpenCXSpec(ProviderSpec):
    """open.cx keys are scoped: a 403 names the scope instead of a generic credential check."""

    def hint_for(self, status: int, path: str) -> str:
        if status in (400, 422):
            return (
                "open.cx rejected the request as invalid (see its message); check "
                "`sources.opencx.page_size` and `sources.opencx.datasource_ids`"
            )
        if status == 403:
            return (
                "the API key is valid but lacks a scope: syncing needs `crawl:read`, crawl "
                f"actions need `crawl:write`; {self.auth_hint()}"
            )
        return super().hint_for(status, path)


SPEC = OpenCXSpec(
    name=PROVIDER,
    parse_error=_fastify_error,
    not_found_hints=(
        (
            r"^/crawl/(?P<datasource_id>[^/]+)/crawls/(?P<job_id>[^/]+)",
            "crawl job {job_id!r} of datasource {datasource_id!r} does not exist",
        ),
        (
            r"^/crawl/(?P<datasource_id>[^/]+)",
            "datasource {datasource_id!r} does not exist or is not visible to this API key: "
            "check `sources.opencx.datasource_ids` (env SOURCES__OPENCX__DATASOURCE_IDS)",
        ),
    ),
)


def make_client(
    api_key: str,
    base_url: str,
    requests_per_minute: float,
    pacing_window_seconds: float,
    stats: RequestStats | None = None,
) -> ProviderRESTClient:
    """The paced open.cx client: `requests_per_minute`, spread over `pacing_window_seconds`."""
    if requests_per_minute <= 0:
        raise ValueError(
            f"opencx: requests_per_minute={requests_per_minute} must be > 0: fix "
            "`sources.opencx.requests_per_minute` (env SOURCES__OPENCX__REQUESTS_PER_MINUTE)"
        )
    if not 0 < pacing_window_seconds <= 60:
        raise ValueError(
            f"opencx: pacing_window_seconds={pacing_window_seconds} must be in (0, 60]: fix "
            "`sources.opencx.pacing_window_seconds`"
        )
    client = build_client(
        SPEC,
        base_url.rstrip("/"),
        BearerTokenAuth(token=api_key),
        paginator=GuardedCursorPaginator(PROVIDER, NEXT_CURSOR_PATH, CURSOR_PARAM),
        data_selector=ITEMS_SELECTOR,
        stats=stats,
    )
    # a shorter window holds its share of the per-minute budget: stricter, never looser
    limiter = RateLimiter.budget(requests_per_minute, per=60.0, window=pacing_window_seconds)
    install_pacing(client, limiter)
    return client


# every id in an open.cx path is a UUID (docs/opencx.md#errors: a malformed one is a 400)
ID_NAMES = {"datasource_id": "datasource id", "job_id": "crawl job id"}


def endpoint_path(name: str, **ids: str) -> str:
    """The path of endpoint `name` with its ids checked (UUIDs) and URL-escaped by the shared
    id helper: a malformed id raises `InvalidIdError` (a `ValueError`) and nothing is sent."""
    named = {key: (value, UUID.named(ID_NAMES.get(key, key))) for key, value in ids.items()}
    return fill_path(endpoint(name).path, provider=PROVIDER, action=name, **named)


def pages(
    client: ProviderRESTClient, name: str, params: dict[str, Any], **ids: str
) -> Iterator[list[dict[str, Any]]]:
    """The pages of a cursor-paginated list endpoint of the table (`{items, next}`)."""
    if endpoint(name).pagination != "cursor":
        raise ValueError(f"opencx: endpoint {name!r} is not a paginated list")
    # a copy: dlt's cursor paginator writes the cursor into the params dict it is given
    # (docs/dlt-behaviours.md, RESTClient and paginators)
    yield from client.paginate(endpoint_path(name, **ids), params=dict(params))


def validate_uuid(value: str, what: str, setting: str, action: str = "sync") -> str:
    """Refuse a malformed id before the API does (it answers 400 for it): the shared id check
    (`scrapesync.sources.common.ids`) with open.cx's own UUID pattern (settings.py)."""
    fmt = replace(UUID, what=what, pattern=UUID_PATTERN.removeprefix("^").removesuffix("$"))
    return checked_id(value, fmt, provider=PROVIDER, action=action, fix=setting)


def call(client: ProviderRESTClient, name: str, body: Any = None, **ids: str) -> dict[str, Any]:
    """One non-list call of the endpoint table; returns the decoded JSON object."""
    method: Any = endpoint(name).method
    response = client.request(endpoint_path(name, **ids), method=method, json=body)
    payload: dict[str, Any] = response.json()
    return payload


def get_datasource(client: ProviderRESTClient, datasource_id: str) -> dict[str, Any]:
    return call(client, "get_datasource", datasource_id=datasource_id)


def get_crawl_job(client: ProviderRESTClient, datasource_id: str, job_id: str) -> dict[str, Any]:
    return call(client, "get_crawl_job", datasource_id=datasource_id, job_id=job_id)


def _write(client: ProviderRESTClient, name: str, body: Any = None, **ids: str) -> dict[str, Any]:
    """A `crawl:write` call: a 403 becomes an error that names the missing scope."""
    try:
        return call(client, name, body, **ids)
    except ProviderAPIError as exc:
        if exc.status != 403:
            raise
        raise ProviderAPIError(
            PROVIDER, exc.method, exc.path, 403, exc.detail, WRITE_SCOPE_HINT
        ) from None


def start_crawl(client: ProviderRESTClient, datasource_id: str) -> dict[str, Any]:
    """Start a crawl; a 409 (one active crawl per datasource) names the running job."""
    datasource_id = validate_uuid(datasource_id, "datasource id", DATASOURCE_ARG, "crawl")
    try:
        return _write(client, "start_crawl", datasource_id=datasource_id)
    except ProviderAPIError as exc:
        if exc.status != 409:
            raise
        active = (get_datasource(client, datasource_id).get("active_crawl_job") or {}).get("id")
        hint = "wait for the running crawl to finish"
        if active:
            hint += f", or cancel it: scrapesync opencx cancel {datasource_id} {active}"
        raise ProviderAPIError(PROVIDER, exc.method, exc.path, 409, exc.detail, hint) from None


def cancel_crawl(client: ProviderRESTClient, datasource_id: str, job_id: str) -> dict[str, Any]:
    datasource_id = validate_uuid(datasource_id, "datasource id", DATASOURCE_ARG, "cancel")
    job_id = validate_uuid(job_id, "crawl job id", "the JOB_ID argument", "cancel")
    return _write(client, "cancel_crawl", datasource_id=datasource_id, job_id=job_id)


def set_datasource_status(
    client: ProviderRESTClient, datasource_id: str, status: str
) -> dict[str, Any]:
    """Pause or resume a datasource's scheduled recrawls (`PATCH /crawl/{id}` status)."""
    if status not in DATASOURCE_STATUSES:
        raise ValueError(f"opencx: status {status!r} is not one of {DATASOURCE_STATUSES}")
    action = "pause" if status == "paused" else "resume"
    datasource_id = validate_uuid(datasource_id, "datasource id", DATASOURCE_ARG, action)
    return _write(client, "update_datasource", {"status": status}, datasource_id=datasource_id)
