"""The Reworkd API as scrapesync calls it: one paginating client, its error parser and hints.

Reworkd does not document its error bodies; its API is FastAPI, whose envelope is
`{"detail": "..."}`, or a list of `{"loc", "msg", ...}` for a 422 validation error
(docs/reworkd.md#errors). Auth is `Authorization: Bearer <token>` (docs/reworkd.md#auth).
"""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

from scrapesync.sources.common.client import ProviderRESTClient, build_client
from scrapesync.sources.common.errors import ProviderSpec
from scrapesync.sources.common.paginators import GuardedCursorPaginator
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.reworkd.settings import (
    CURSOR_PARAM,
    ITEMS_SELECTOR,
    NEXT_CURSOR_PATH,
    OUTPUTS,
)

PROVIDER = "reworkd"


def parse_error(body: Any) -> str | None:
    """FastAPI's `{"detail": "..."}` or `{"detail": [{"loc": [...], "msg": ...}]}`."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail) if detail else None


SPEC = ProviderSpec(
    name=PROVIDER,
    parse_error=parse_error,
    not_found_hints=(
        (
            # the group pattern is built from the endpoint table's own path
            OUTPUTS.path.replace("{group_id}", "(?P<group_id>[^/]+)"),
            "group {group_id!r} is unknown or not visible to this API key: check "
            "`sources.reworkd.group_ids` (env SOURCES__REWORKD__GROUP_IDS)",
        ),
    ),
)


def outputs_client(
    api_key: str, base_url: str, stats: RequestStats | None = None
) -> ProviderRESTClient:
    """A client that pages `GET /v1/outputs/{group_id}` by its integer cursor to the end.

    The paginator stops on a null `next_cursor`, on an empty page, and refuses a cursor it was
    already given (docs/reworkd.md#pagination). `RESTClient.paginate` copies it per call, so
    one client serves every group.
    """
    return build_client(
        SPEC,
        base_url,
        BearerTokenAuth(token=api_key),
        paginator=GuardedCursorPaginator(PROVIDER, NEXT_CURSOR_PATH, CURSOR_PARAM),
        data_selector=ITEMS_SELECTOR,
        stats=stats,
    )


def outputs_path(group_id: str) -> str:
    """The outputs path of one group."""
    return OUTPUTS.path.format(group_id=group_id)
