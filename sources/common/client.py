"""The HTTP client every provider uses: dlt's `RESTClient` over dlt's retrying session.

Everything below rides on dlt's public API: the retrying session comes from
`dlt.sources.helpers.requests.Client(...)` and its retry settings, and one response hook,
passed with the `hooks=` argument of `request`/`paginate`, runs on every attempt (retries
included, since dlt retries around the session's send, see docs/dlt-behaviours.md, retries
and Retry-After):

* 5xx, timeouts and connection resets are retried with exponential backoff; 429 is retried
  honouring `Retry-After`, but only while the wait the provider asks for stays under
  `[runtime] request_max_retry_delay`: a longer wait stops the sync with a clear error instead
  of a silent hour-long sleep. `Retry-After: 0` (or a date in the past) falls back to the
  exponential backoff, so it never spins.
* Every attempt is counted in `RequestStats`.
* Every response body is decoded once, with orjson, and cached on the response: dlt's
  `RESTClient` and its paginators each call `response.json()` (docs/dlt-behaviours.md,
  RESTClient and paginators).
* The proxy environment is read once per host: `requests` scans `os.environ` twice for every
  request (proxies, then `NO_PROXY`), which cost more CPU than the request's own work on a
  sync of 1,000 small pages; a client talks to a handful of hosts.
* A data selector is parsed once per process: `RESTClient` hands the string to
  `jsonpath.find_values`, which parses it again for every page (measured: ~1.7 ms a parse,
  more than the request itself on a fast API).
* Every failure that is not retried, or that outlived its retries, becomes a
  `ProviderAPIError` (`scrapesync.sources.common.errors`). API keys never reach a message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson
from dlt.common import jsonpath
from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.sources.helpers.requests import Client, Session
from dlt.sources.helpers.rest_client import PageData, RESTClient
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.helpers.rest_client.typing import Hooks, HTTPMethod, HTTPMethodBasic
from requests import HTTPError, Response
from requests.auth import AuthBase

from scrapesync.sources.common.errors import (
    RETRY_STATUS,
    ProviderAPIError,
    ProviderSpec,
    error_detail,
    malformed_response,
    safe_path,
)
from scrapesync.sources.common.stats import RequestStats

# dlt's retry condition: (response or None, exception or None) -> retry?
RetryCondition = Callable[[Response | None, BaseException | None], bool]


def _decode_once(spec: ProviderSpec, response: Response, base_url: str) -> Callable[..., Any]:
    """Return a `response.json` replacement that decodes the body once with orjson."""
    cache: list[Any] = []

    def json(**_: Any) -> Any:
        if not cache:
            try:
                cache.append(orjson.loads(response.content))
            except orjson.JSONDecodeError as exc:
                why = f"the body is not JSON ({exc})"
                raise malformed_response(spec, response, why, base_url) from None
        return cache[0]

    return json


def retry_after_seconds(response: Response) -> float | None:
    """Seconds the provider asks to wait (`Retry-After` as seconds or HTTP date), if any."""
    header = response.headers.get("Retry-After")
    if not header:
        return None
    header = header.strip()
    if re.fullmatch(r"\d+(\.\d+)?", header):
        return float(header)
    try:
        return parsedate_to_datetime(header).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


class ProviderRESTClient(RESTClient):
    """dlt's RESTClient whose every request, paged or not, runs scrapesync's response hook first.

    dlt's public `hooks=` argument of `request` (and so `get`/`post`) and `paginate` carries
    it: the hook is put in front of the caller's own response hooks, so a provider adds checks
    of its own (`hooks={"response": [check]}`) without losing this one. It is not registered
    on the session instead, because requests lets a request's response hooks replace the
    session's, and `paginate` always brings one (dlt's own raise-for-status, see
    docs/dlt-behaviours.md, RESTClient and paginators). Keyword arguments requests accepts,
    such as `stream=True`, pass through `request` and `paginate` to the send.
    """

    def __init__(
        self, spec: ProviderSpec, stats: RequestStats, max_retry_delay: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.stats = stats
        self.max_retry_delay = max_retry_delay

    def request(self, path: str = "", method: HTTPMethod = "GET", **kwargs: Any) -> Response:
        kwargs["hooks"] = self.with_response_hook(kwargs.get("hooks"))
        return super().request(path, method, **kwargs)

    def paginate(
        self,
        path: str = "",
        method: HTTPMethodBasic = "GET",
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        auth: AuthBase | None = None,
        paginator: BasePaginator | None = None,
        data_selector: jsonpath.TJsonPath | None = None,
        hooks: Hooks | None = None,
        headers: dict[str, Any] | None = None,
        *,
        data: Any | None = None,
        **kwargs: Any,
    ) -> Iterator[PageData[Any]]:
        return super().paginate(
            path,
            method,
            params,
            json,
            auth,
            paginator,
            data_selector,
            self.with_response_hook(hooks),
            headers,
            data=data,
            **kwargs,
        )

    def extract_response(self, response: Response, data_selector: jsonpath.TJsonPath) -> list[Any]:
        if isinstance(data_selector, str):
            data_selector = compiled_path(data_selector)
        return super().extract_response(response, data_selector)

    def with_response_hook(self, hooks: Hooks | None) -> Hooks:
        """`hooks` with this client's response hook first (once, whoever listed it already)."""
        merged = dict(hooks or {})
        given = merged.get("response") or []
        others = [given] if callable(given) else list(given)
        merged["response"] = [self._on_response, *(h for h in others if h != self._on_response)]
        return merged

    def _on_response(self, response: Response, *_: Any, **__: Any) -> None:
        self.stats.record(response)
        if response.status_code < 400:
            decoder = _decode_once(self.spec, response, self.base_url)
            response.json = decoder  # type: ignore[method-assign]
            return
        raise self._error(response)

    def _error(self, response: Response) -> ProviderAPIError:
        path = safe_path(response.url, self.base_url)
        method = response.request.method or "GET"
        detail = error_detail(self.spec, response)
        hint = self.spec.hint_for(response.status_code, path)
        wait = retry_after_seconds(response) if response.status_code == 429 else None
        if wait is not None and wait > self.max_retry_delay:
            detail += (
                f" (the provider asks to wait {wait:.0f} s, more than the "
                f"{self.max_retry_delay:.0f} s this sync will wait)"
            )
        elif response.status_code == 429 or response.status_code in RETRY_STATUS:
            detail += " (gave up after the configured retries)"
        return ProviderAPIError(
            self.spec.name, method, path, response.status_code, detail, hint, response=response
        )


# distinct (host, settings) a session keeps the environment's answer for; more is not a client
ENVIRONMENT_HOSTS = 256


def read_environment_once(session: Session) -> None:
    """Make `session` read the proxy and CA-bundle environment once per host and settings.

    The answer is what `requests` itself computes (`merge_environment_settings`, NO_PROXY
    included), kept for the session's life: a sync does not expect its environment to change
    while it runs.
    """
    original: Callable[..., Any] = session.merge_environment_settings
    known: dict[tuple[str, ...], dict[str, Any]] = {}

    def merged(url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        parts = urlsplit(url if isinstance(url, str) else str(url))
        settings = (sorted((proxies or {}).items()), verify, cert)
        key = (parts.scheme, parts.netloc, repr(settings))
        answer = known.get(key)
        if answer is None:
            answer = dict(original(url, dict(proxies or {}), None, verify, cert))
            if len(known) >= ENVIRONMENT_HOSTS:
                known.clear()
            known[key] = answer
        chosen = stream if stream is not None else session.stream
        return {**answer, "proxies": dict(answer["proxies"]), "stream": chosen}

    session.merge_environment_settings = merged  # type: ignore[method-assign]


@lru_cache(maxsize=64)
def compiled_path(path: str) -> Any:
    """`path` parsed by dlt's JSONPath parser, once per process (a parsed path is read-only,
    so threads share it)."""
    return jsonpath.compile_path(path)


def throttled_within(max_delay: float) -> RetryCondition:
    """Retry a 429 unless the provider asks for a wait longer than `max_delay`."""

    def should_retry(response: Response | None, exception: BaseException | None) -> bool:
        if response is None and isinstance(exception, HTTPError):
            response = exception.response
        if response is None or response.status_code != 429:
            return False
        wait = retry_after_seconds(response)
        return wait is None or wait <= max_delay

    return should_retry


def build_client(
    spec: ProviderSpec,
    base_url: str,
    auth: AuthBase | None,
    *,
    paginator: BasePaginator | None = None,
    data_selector: str | None = None,
    stats: RequestStats | None = None,
    headers: Mapping[str, str] | None = None,
    retry_status: tuple[int, ...] = RETRY_STATUS,
    retry_exceptions: tuple[type[BaseException], ...] | None = None,
    retry_condition: Callable[[float], RetryCondition] | None = None,
) -> ProviderRESTClient:
    """A `RESTClient` for one provider over dlt's retrying session.

    Retry attempts, backoff factor, the longest wait and the timeout come from dlt's
    `[runtime]` settings (`request_max_attempts`, `request_backoff_factor`,
    `request_max_retry_delay`, `request_timeout`), so they are configured the dlt way. By
    default 5xx, connection errors and timeouts are retried, and 429 while its Retry-After
    stays within the longest wait; a call that must not be repeated blindly (a paid POST)
    narrows `retry_status` / `retry_exceptions` and passes its own `retry_condition`
    (a factory given the longest wait).
    """
    runtime = resolve_configuration(RuntimeConfiguration())
    max_delay = float(runtime.request_max_retry_delay)
    extra: dict[str, Any] = {} if retry_exceptions is None else {"exceptions": retry_exceptions}
    session = Client(
        request_timeout=runtime.request_timeout,
        raise_for_status=False,
        status_codes=retry_status,
        retry_condition=(retry_condition or throttled_within)(max_delay),
        request_max_attempts=runtime.request_max_attempts,
        request_backoff_factor=runtime.request_backoff_factor,
        request_max_retry_delay=max_delay,
        respect_retry_after_header=True,
        **extra,
    ).session
    read_environment_once(session)
    return ProviderRESTClient(
        spec,
        stats or RequestStats(),
        max_delay,
        base_url=base_url,
        auth=auth,
        paginator=paginator,
        data_selector=data_selector,
        session=session,
        headers=dict(headers or {}),
    )
