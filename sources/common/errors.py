"""One error type for every provider call that failed for good, and the helpers that build it.

`ProviderAPIError` names the provider, method, API path (never the query string, which may hold
a key), status, the provider's own message and a hint saying how to fix it. A 2xx answer whose
body is not what the provider documents is the same error with a "malformed response" detail,
built by `malformed_response` (from the HTTP response) or `malformed_item` (from a decoded item).

Every part of the message goes through `redact` (`scrapesync.sources.common.redact`), and the
credentials of the request that failed are registered as secrets before the provider's own
message is quoted: a 401 body that echoes the key never reaches the message, a log or
`scrapesync.sync_runs.error`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from requests import HTTPError, Response

from scrapesync.sources.common.redact import redact, register_request_secrets

RETRY_STATUS = tuple(range(500, 600))
MALFORMED_RESPONSE_HINT = (
    "the provider (or a proxy in between) answered with an unexpected body; "
    "check `base_url` and retry later"
)
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
        if response is not None:
            _register_credentials(response)
        # dlt's pipeline trace keeps an exception's string attributes too: each is redacted
        self.provider = provider
        self.method = method
        self.path = path = redact(path)
        self.status = status
        self.detail = detail = redact(detail)
        self.hint = hint = redact(hint)
        status_text = f" returned HTTP {status}" if status else " failed"
        message = f"{provider}: {method} {path}{status_text}: {detail}"
        if hint:
            message += f"\n  How to fix: {hint}"
        super().__init__(message, response=response)


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


def _register_credentials(response: Response) -> None:
    """The credentials `response`'s request carried become secrets (before a body is quoted)."""
    request = getattr(response, "request", None)
    if request is not None:
        register_request_secrets(request.headers or {}, str(request.url or ""))


def safe_path(url: str, base_url: str = "") -> str:
    """The API path of `url`: no scheme, host, base-URL prefix or query (which may hold secrets)."""
    path = urlsplit(url).path or "/"
    prefix = urlsplit(base_url).path.rstrip("/")
    if prefix and path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return path


def is_streamed(response: Response) -> bool:
    """Whether the body of `response` has not been read yet (a streamed download)."""
    return not response._content_consumed  # type: ignore[attr-defined]


def malformed_response(
    spec: ProviderSpec,
    response: Response,
    why: str,
    base_url: str = "",
    *,
    hint: str = MALFORMED_RESPONSE_HINT,
) -> ProviderAPIError:
    """The error for a 2xx answer whose body is not what the provider documents.

    The detail names the Content-Type and how the body starts; a streamed body (a download
    its reader found malformed) is not read here, so `why` should quote what was read.
    """
    seen = f"Content-Type {response.headers.get('Content-Type', '?')}"
    if not is_streamed(response):
        snippet = response.text[:120].replace("\n", " ")
        seen += f"; body starts {snippet!r}"
    return ProviderAPIError(
        spec.name,
        response.request.method or "GET",
        safe_path(response.url, base_url),
        response.status_code,
        f"malformed response: {why} ({seen})",
        hint,
        response=response,
    )


def error_detail(spec: ProviderSpec, response: Response) -> str:
    """The provider's own message from an error response, or its status reason (redacted)."""
    _register_credentials(response)
    try:
        parsed = spec.parse_error(orjson.loads(response.content))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        parsed = None
    return redact(parsed or response.reason or "no error message")


def malformed_item(
    provider: str, path: str, detail: str, method: str = "GET", *, hint: str | None = None
) -> ProviderAPIError:
    """The error for a 2xx JSON answer that holds what the provider's docs rule out (a time
    that is not a time, a key of the wrong type, a field that must be there): refused before
    anything is written. `hint` replaces the sync's advice where an action failed instead."""
    return ProviderAPIError(
        provider,
        method,
        path,
        200,
        f"malformed response: {detail}",
        hint or f"nothing of this sync was loaded; retry later or report it to {provider}",
    )


def pagination_loop(provider: str, response: Response, detail: str) -> ProviderAPIError:
    """The error for pages that would never end (a cursor or last id handed back again)."""
    return ProviderAPIError(
        provider,
        response.request.method or "GET",
        safe_path(response.url),
        response.status_code,
        f"pagination loops: {detail}",
        f"the provider's pagination is broken; retry later or report it to {provider}",
        response=response,
    )
