"""The Reworkd API as scrapesync calls it: one paginating client, its error parser and hints.

Reworkd does not document its error bodies; its API is FastAPI, whose envelope is
`{"detail": "..."}`, or a list of `{"loc", "msg", ...}` for a 422 validation error
(docs/reworkd.md#errors). Auth is `Authorization: Bearer <token>` (docs/reworkd.md#auth).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeAlias

import pyarrow as pa
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from requests import Response

from scrapesync.sources.common.client import ProviderRESTClient, build_client
from scrapesync.sources.common.errors import ProviderSpec
from scrapesync.sources.common.paginators import GuardedCursorPaginator
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.reworkd.pages import read_items
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


# a page as `outputs_pages` yields it: read from its bytes, or decoded (see `pages.py`)
Page: TypeAlias = pa.StructArray | list[Any]


def outputs_pages(
    client: ProviderRESTClient, group_id: str, params: dict[str, Any]
) -> Iterator[Page]:
    """The non-empty pages of one group, each read into Arrow where that reads it exactly.

    Paging, retries and errors are the client's (`paginate`); `read_into_arrow` runs after the
    client's own response hook, on the thread that fetches."""
    pages = client.paginate(
        outputs_path(group_id), params=params, hooks={"response": [read_into_arrow]}
    )
    for page in pages:
        if len(page) == 1 and isinstance(page[0], pa.StructArray):
            yield page[0]
        elif page:
            yield list(page)


def read_into_arrow(response: Response, *_: Any, **__: Any) -> None:
    """Response hook: a page `pages.read_items` reads is answered from Arrow.

    `response.json()` then gives the document with `items` holding the page's struct array
    (or nothing, for an empty page), which the paginator pages through like the decoded body
    (its `metadata.next_cursor` is the same Python value). Any other page keeps the client's
    decoder (orjson, once), whose errors stay the client's."""
    if not 200 <= response.status_code < 300:
        return
    read = read_items(response.content)
    if read is None:
        return
    items, rest = read
    document = {**rest, ITEMS_SELECTOR: [items] if len(items) else []}
    response.json = lambda **_: document  # type: ignore[method-assign]
