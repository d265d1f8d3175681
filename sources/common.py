"""Shared HTTP, error and time code for every scrapesync provider.

One place decides how scrapesync talks HTTP:

* dlt's `RESTClient` over dlt's retrying `requests` session (tenacity). 5xx, timeouts and
  connection resets are retried with exponential backoff; 429 is retried honouring
  `Retry-After`, but only while the wait the provider asks for stays under
  `[runtime] request_max_retry_delay`: a longer wait stops the sync with a clear error instead
  of a silent hour-long sleep. `Retry-After: 0` (or a date in the past) falls back to the
  exponential backoff, so it never spins.
* Every response body is decoded once, with orjson, and cached on the response: dlt's
  `RESTClient` and its paginators each call `response.json()` (perf-facts §2).
* Every failure that is not retried, or that outlived its retries, becomes one exception type,
  `ProviderAPIError`, naming the provider, method, path (never the query string), status, the
  provider's own message and a hint that says how to fix it. API keys never reach a message.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import pendulum
from dlt.common import logger
from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import (
    BasePaginator,
    JSONResponseCursorPaginator,
)
from requests import HTTPError, Request, Response
from requests.auth import AuthBase

RETRY_STATUS = tuple(range(500, 600))
ErrorParser = Callable[[Any], str | None]


class ProviderAPIError(HTTPError):
    """A provider call that failed for good: what failed, why, and how to fix it."""

    def __init__(
        self,
        provider: str,
        method: str,
        path: str,
        status: int | None,
        detail: str,
        hint: str = "",
        response: Response | None = None,
    ) -> None:
        self.provider = provider
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.hint = hint
        status_text = f" returned HTTP {status}" if status else " failed"
        message = f"{provider}: {method} {path}{status_text}: {detail}"
        if hint:
            message += f"\n  How to fix: {hint}"
        super().__init__(message, response=response)


@dataclass
class RequestStats:
    """Counters of the HTTP work of one provider sync (thread-safe)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, response: Response) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += _body_size(response)
            if response.status_code == 429:
                self.throttled += 1
            if response.status_code == 429 or response.status_code in RETRY_STATUS:
                self.retries += 1


@dataclass(frozen=True)
class ProviderSpec:
    """How one provider reports errors and which setting fixes which failure.

    Attributes:
        name: provider name, also the dlt config section (`sources.<name>`).
        parse_error: turns a decoded error body into the provider's own message.
        not_found_hints: (path regex, hint template) pairs for 400/404/422 answers; named groups
            of the regex fill the template, so the hint can name the unknown id.
        auth_setting: the config key that holds the credential.
    """

    name: str
    parse_error: ErrorParser
    not_found_hints: tuple[tuple[str, str], ...] = ()
    auth_setting: str = "api_key"

    def auth_hint(self) -> str:
        env = f"SOURCES__{self.name.upper()}__{self.auth_setting.upper()}"
        return (
            f"check the credential in `sources.{self.name}.{self.auth_setting}` "
            f"(.dlt/secrets.toml or env {env}) and its permissions"
        )

    def hint_for(self, status: int, path: str) -> str:
        if status in (401, 403):
            return self.auth_hint()
        if status == 429:
            return (
                "the provider is rate limiting this key; run the sync later, or raise "
                "[runtime] request_max_retry_delay (RUNTIME__REQUEST_MAX_RETRY_DELAY) "
                "to wait longer"
            )
        if status >= 500:
            return "the provider is failing; retries were exhausted, run the sync again later"
        for pattern, template in self.not_found_hints:
            match = re.search(pattern, path)
            if match:
                return template.format(**match.groupdict())
        return "check the request parameters in the source configuration"


def safe_path(url: str, base_url: str = "") -> str:
    """The API path of `url`: no scheme, host, base-URL prefix or query (which may hold secrets)."""
    path = urlsplit(url).path or "/"
    prefix = urlsplit(base_url).path.rstrip("/")
    if prefix and path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return path


def _body_size(response: Response) -> int:
    """Bytes of the body: response hooks run before requests reads it, so the declared
    `Content-Length` is used until it has been read (a chunked body without one counts 0)."""
    if not _is_streamed(response):
        return len(response.content or b"")
    try:
        return int(response.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def _is_streamed(response: Response) -> bool:
    return not response._content_consumed  # type: ignore[attr-defined]


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


def malformed_response(
    spec: ProviderSpec, response: Response, why: str, base_url: str = ""
) -> ProviderAPIError:
    """The error for a 2xx answer whose body is not what the provider documents."""
    content_type = response.headers.get("Content-Type", "?")
    snippet = response.text[:120].replace("\n", " ") if not _is_streamed(response) else ""
    return ProviderAPIError(
        spec.name,
        response.request.method or "GET",
        safe_path(response.url, base_url),
        response.status_code,
        f"malformed response: {why} (Content-Type {content_type}; body starts {snippet!r})",
        "the provider (or a proxy in between) answered with an unexpected body; "
        "check `base_url` and retry later",
        response=response,
    )


def error_detail(spec: ProviderSpec, response: Response) -> str:
    """The provider's own message from an error response, or its status reason."""
    try:
        parsed = spec.parse_error(orjson.loads(response.content))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        parsed = None
    return parsed or response.reason or "no error message"


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
    """dlt's RESTClient whose every request goes through scrapesync's response hook."""

    def __init__(
        self, spec: ProviderSpec, stats: RequestStats, max_retry_delay: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.stats = stats
        self.max_retry_delay = max_retry_delay

    def _create_response_handler(self) -> Callable[..., None]:
        return self._on_response

    def _create_request(self, *args: Any, **kwargs: Any) -> Request:
        hooks = dict(kwargs.get("hooks") or {})
        hooks.setdefault("response", [self._on_response])
        kwargs["hooks"] = hooks
        return super()._create_request(*args, **kwargs)

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


def _retry_throttled_within(max_delay: float) -> Callable[[Response | None, Any], bool]:
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
) -> ProviderRESTClient:
    """A `RESTClient` for one provider over dlt's retrying session.

    Retry attempts, backoff factor, the longest wait and the timeout come from dlt's
    `[runtime]` settings (`request_max_attempts`, `request_backoff_factor`,
    `request_max_retry_delay`, `request_timeout`), so they are configured the dlt way.
    """
    runtime = resolve_configuration(RuntimeConfiguration())
    max_delay = float(runtime.request_max_retry_delay)
    session = Client(
        request_timeout=runtime.request_timeout,
        raise_for_status=False,
        status_codes=RETRY_STATUS,
        retry_condition=_retry_throttled_within(max_delay),
        request_max_attempts=runtime.request_max_attempts,
        request_backoff_factor=runtime.request_backoff_factor,
        request_max_retry_delay=max_delay,
        respect_retry_after_header=True,
    ).session
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


class GuardedCursorPaginator(JSONResponseCursorPaginator):
    """Cursor paginator that stops on an empty page and refuses to loop.

    dlt's cursor paginator stops only when the cursor is null (dlt-facts §1). Providers that
    end with an empty page, or that (through a bug) hand back the cursor they were just given,
    would otherwise make a sync read forever.
    """

    def __init__(self, provider: str, cursor_path: str, cursor_param: str) -> None:
        super().__init__(cursor_path=cursor_path, cursor_param=cursor_param)
        self.provider = provider
        self._seen: set[Any] = set()

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        if not data:
            self._has_next_page = False
            return
        cursor = self._next_reference
        if cursor is not None and cursor in self._seen:
            raise ProviderAPIError(
                self.provider,
                response.request.method or "GET",
                safe_path(response.url),
                response.status_code,
                f"pagination loops: cursor {cursor!r} was returned twice",
                "the provider's pagination is broken; retry later or report it to the provider",
                response=response,
            )
        self._seen.add(cursor)


def parse_datetime(value: str | pendulum.DateTime | None) -> pendulum.DateTime | None:
    """Parse an ISO 8601 date or date-time; naive values are taken as UTC."""
    if value is None or isinstance(value, pendulum.DateTime):
        return value
    parsed = pendulum.parse(value, tz="UTC")
    if not isinstance(parsed, pendulum.DateTime):
        parsed = pendulum.datetime(parsed.year, parsed.month, parsed.day, tz="UTC")  # type: ignore[union-attr]
    return parsed.in_timezone("UTC")


def is_iso_time(value: Any) -> bool:
    """Whether `value` is an ISO 8601 date or date-time text, as `parse_datetime` reads it."""
    if not isinstance(value, str):
        return False
    try:
        parse_datetime(value)
    except ValueError:  # pendulum's ParserError included
        return False
    return True


def malformed_item(provider: str, path: str, detail: str, method: str = "GET") -> ProviderAPIError:
    """The error for a 2xx JSON answer that holds what the provider's docs rule out (a time
    that is not a time, a key of the wrong type): refused before anything is written."""
    return ProviderAPIError(
        provider,
        method,
        path,
        200,
        f"malformed response: {detail}",
        f"nothing of this sync was loaded; retry later or report it to {provider}",
    )


def check_times(
    provider: str, path: str, item: dict[str, Any], fields: Iterable[str], what: str
) -> None:
    """Refuse an item whose time `fields` hold something else than an ISO 8601 time; null is
    fine (not started or finished yet). Such fields order lists and set watermarks: a guess
    would skip or misplace rows."""
    for name in fields:
        value = item.get(name)
        if value is not None and not is_iso_time(value):
            detail = f"{what} {item.get('id')} has `{name}` {value!r}, not an ISO 8601 time"
            raise malformed_item(provider, path, detail)


def undocumented(item: dict[str, Any], documented: Container[str]) -> dict[str, Any]:
    """The fields of `item` its docs do not list: schema drift, kept as new columns."""
    return {name: value for name, value in item.items() if name not in documented}


def iso_z(value: pendulum.DateTime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC: the form providers' date filters document."""
    return value.in_timezone("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


_DONE = object()


def prefetch(pages: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Read `pages` in a background thread, up to `depth` pages ahead of the consumer.

    Cursor pagination cannot fetch pages in parallel, but it can fetch page N+1 while page N
    is transformed and written: the network wait overlaps the CPU work. Exceptions of the
    reader are raised in the consumer; closing the consumer stops the reader.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for page in pages:
                if not offer(page):
                    return
            offer(_DONE)
        except BaseException as exc:
            offer(exc)

    reader = threading.Thread(target=read, name="scrapesync-prefetch", daemon=True)
    reader.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def log_pages(provider: str, label: str, pages: Iterator[list[Any]]) -> Iterator[list[Any]]:
    """Pass pages through, logging one progress line per page."""
    total = 0
    for number, page in enumerate(pages, start=1):
        total += len(page)
        logger.info(f"{provider} {label}: page {number}, {len(page)} rows ({total} so far)")
        yield page
