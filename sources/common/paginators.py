"""Paginators beyond dlt's own, and a progress log over a page stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dlt.common import logger
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from requests import Response

from scrapesync.sources.common.errors import pagination_loop


class GuardedCursorPaginator(JSONResponseCursorPaginator):
    """Cursor paginator that stops on an empty page and refuses to loop.

    dlt's cursor paginator stops only when the cursor is null unless told to stop after an
    empty page (its `stop_after_empty_page` option, set here; docs/dlt-behaviours.md, RESTClient
    and paginators). Providers that end with an empty page, or that (through a bug) hand back
    the cursor they were just given, would otherwise make a sync read forever.
    """

    def __init__(self, provider: str, cursor_path: str, cursor_param: str) -> None:
        super().__init__(
            cursor_path=cursor_path, cursor_param=cursor_param, stop_after_empty_page=True
        )
        self.provider = provider
        self._seen: set[Any] = set()

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        if not self.has_next_page:
            return
        cursor = self._next_reference
        if cursor in self._seen:
            raise pagination_loop(self.provider, response, f"cursor {cursor!r} was returned twice")
        self._seen.add(cursor)


def log_pages(provider: str, label: str, pages: Iterator[list[Any]]) -> Iterator[list[Any]]:
    """Pass pages through, logging one progress line per page."""
    total = 0
    for number, page in enumerate(pages, start=1):
        total += len(page)
        logger.info(f"{provider} {label}: page {number}, {len(page)} rows ({total} so far)")
        yield page
