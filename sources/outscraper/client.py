"""Outscraper HTTP layer: `sources.common` plus the checks Outscraper's API needs.

* Errors can arrive with HTTP 2xx: a body carrying `error: true` or an `errorMessage` is a
  failure (docs/outscraper.md#errors: the official SDKs check the body, not the status). Every
  call made here adds a response hook after common's own, so such a body becomes a
  `ProviderAPIError` with Outscraper's message before any data is read from it.
* `GET /tasks` pages by keyset (`lastId` = last task id of the previous page, `has_more`):
  `KeysetPaginator`. `GET /requests` pages by `skip`/`pageSize`: `SkipPaginator`
  (docs/outscraper.md#pagination).
* Result files are downloaded streaming through the same retrying session; the API key is
  only sent to the API's own host (a `file_url` on a storage host is pre-signed [I]).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.helpers.rest_client.paginators import BasePaginator, OffsetPaginator
from requests import Request, Response

from scrapesync.sources.common.client import ProviderRESTClient, build_client
from scrapesync.sources.common.errors import (
    ProviderAPIError,
    ProviderSpec,
    pagination_loop,
    safe_path,
)
from scrapesync.sources.common.stats import RequestStats
from scrapesync.sources.outscraper.settings import GONE_MESSAGE_PATTERN, REQUESTS_PAGE_SIZE

PROVIDER = "outscraper"


def outscraper_error(body: Any) -> str | None:
    """Outscraper's `{"error": true, "errorMessage": "..."}` envelope
    (docs/outscraper.md#errors)."""
    if not isinstance(body, dict):
        return None
    message = body.get("errorMessage")
    if message:
        return str(message)
    return "error: true without an errorMessage" if body.get("error") is True else None


SPEC = ProviderSpec(
    name=PROVIDER,
    parse_error=outscraper_error,
    not_found_hints=(
        (
            r"^/tasks/(?P<task_id>[^/]+)$",
            "task {task_id!r} does not exist or was removed: check the id in the Outscraper "
            "app or with `GET /tasks`",
        ),
    ),
)


def is_gone(error: ProviderAPIError) -> bool:
    """True when the provider says the object does not exist (404 or a not-found message)."""
    if error.status == 404:
        return True
    return bool(
        error.status and error.status < 300 and re.search(GONE_MESSAGE_PATTERN, error.detail, re.I)
    )


class KeysetPaginator(BasePaginator):
    """`lastId` keyset pagination of `GET /tasks`: `{"tasks": [...], "has_more": bool}`.

    The next page starts after the last id of the page just read. Stops when `has_more` is
    false or the page is empty, and refuses an id it was already given (a loop).
    """

    def __init__(self, id_field: str = "id", param: str = "lastId") -> None:
        super().__init__()
        self.id_field = id_field
        self.param = param
        self.last_id: str | None = None
        self._seen: set[str] = set()

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        body = response.json()
        has_more = isinstance(body, dict) and body.get("has_more") is True
        if not data or not has_more:
            self._has_next_page = False
            return
        last = data[-1].get(self.id_field) if isinstance(data[-1], dict) else None
        if last is None or str(last) in self._seen:
            detail = f"`has_more` is true but page ends with id {last!r} again"
            raise pagination_loop(PROVIDER, response, detail)
        self._seen.add(str(last))
        self.last_id = str(last)

    def update_request(self, request: Request) -> None:
        request.params = {**(request.params or {}), self.param: self.last_id}


class SkipPaginator(OffsetPaginator):
    """`skip`/`pageSize` paging of `GET /requests`; a short page is the last one."""

    def __init__(self, page_size: int = REQUESTS_PAGE_SIZE) -> None:
        super().__init__(
            limit=page_size, offset_param="skip", limit_param="pageSize", total_path=None
        )

    def _stop_after_this_page(self, data: list[Any] | None = None) -> bool:
        return not data or len(data) < self.limit


class OutscraperClient:
    """The calls scrapesync makes to Outscraper, each checked for errors in 2xx bodies."""

    def __init__(self, api_key: str, base_url: str, stats: RequestStats | None = None) -> None:
        self.api_key = api_key
        self.rest: ProviderRESTClient = build_client(
            SPEC, base_url, APIKeyAuth(name="X-API-KEY", api_key=api_key), stats=stats
        )
        # the shared client puts its own hook (stats, status errors, decode-once) first
        self.hooks: Any = {"response": [self._check_body]}

    @property
    def base_url(self) -> str:
        return str(self.rest.base_url)

    def _check_body(self, response: Response, *_: Any, **send_kwargs: Any) -> None:
        # requests runs hooks before it reads the body; a streamed download (`stream=True`)
        # is never buffered here: its reader checks it
        if not 200 <= response.status_code < 300 or send_kwargs.get("stream"):
            return
        if "json" not in response.headers.get("Content-Type", "json"):
            return
        body = response.json()
        message = outscraper_error(body)
        if message is None:
            return
        path = safe_path(response.url, self.base_url)
        status = 401 if re.search(r"\b401\b|unauthori[sz]ed", message, re.I) else 400
        raise ProviderAPIError(
            PROVIDER,
            response.request.method or "GET",
            path,
            response.status_code,
            f"error in a {response.status_code} body: {message}",
            SPEC.hint_for(status, path),
            response=response,
        )

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.rest.get(path, params=params, hooks=self.hooks).json()

    def call(self, method: str, path: str) -> Any:
        """A PUT/DELETE action; returns the decoded body (a JSON string or object)."""
        response = self.rest.request(path, method=method, hooks=self.hooks)  # type: ignore[arg-type]
        return response.json() if response.content else None

    def pages(
        self,
        path: str,
        params: dict[str, Any],
        paginator: BasePaginator,
        data_selector: str | None,
    ) -> Iterator[list[Any]]:
        yield from self.rest.paginate(
            path,
            params=params,
            paginator=paginator,
            data_selector=data_selector,
            hooks=self.hooks,
        )

    def open_stream(self, url: str) -> Response:
        """GET a result file with `stream=True`: nothing is buffered; close it when done."""
        same_host = urlsplit(url).netloc == urlsplit(self.base_url).netloc
        # the client's own response hook only (stats, status errors): the body is not read here
        auth = None if same_host else _NoAuth()
        return self.rest.request(url, method="GET", auth=auth, stream=True)


class _NoAuth:
    """Sends no credential: used for file URLs on another host (pre-signed links)."""

    def __call__(self, request: Any) -> Any:
        return request
