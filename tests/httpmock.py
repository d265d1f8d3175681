"""In-process HTTP for the fast test layer, in the spirit of Airbyte's `HttpMocker`.

Requests a source sends through dlt's retrying session never leave the process: they are
matched against the expectations a test declares (method, path, exact query, optional JSON
body and headers) and answered with canned responses. It is strict both ways: a request that
matches no expectation fails the test, and so does an expectation that no request used, so a
test states every call its code makes. Built on `requests-mock` (which replaces the transport
adapter of every `requests` session, dlt's included), so retries, hooks, paginators and
decoding all run for real; only the socket is gone.

    with HttpMocker() as http:
        http.get(HttpRequest("/v1/items", query={"limit": "2"}), HttpResponse(json=[...]))
        rows = list(my_source(base_url=http.base_url).items)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import requests_mock
from requests_mock.request import _RequestObjectProxy

BASE_URL = "http://api.test"
Query = Mapping[str, str | Sequence[str]]


@dataclass(frozen=True)
class HttpRequest:
    """What an expected request looks like; unset parts are not checked.

    Attributes:
        path: the path below the base URL, e.g. `/v1/outputs/grp`.
        query: the whole query string (exact: a missing or extra parameter does not match).
        json_body: the decoded JSON body.
        headers: headers that must be present with these values (others are allowed).
    """

    path: str
    query: Query | None = None
    json_body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def matches(self, request: _RequestObjectProxy) -> bool:
        if self.query is not None and _query(request.url) != _normalised(self.query):
            return False
        if self.json_body is not None and request.json() != self.json_body:
            return False
        return all(request.headers.get(k) == v for k, v in self.headers.items())


@dataclass(frozen=True)
class HttpResponse:
    """A canned answer: JSON (`json`) or raw bytes/text (`body`), status and headers."""

    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def as_mock(self) -> dict[str, Any]:
        content = self.body if self.body is not None else orjson.dumps(self.json)
        headers = dict(self.headers)
        if self.json is not None:
            headers.setdefault("Content-Type", "application/json")
        raw = content.encode() if isinstance(content, str) else content
        return {"status_code": self.status, "content": raw, "headers": headers}


@dataclass
class _Expectation:
    method: str
    request: HttpRequest
    matcher: Any

    @property
    def called(self) -> int:
        return int(self.matcher.call_count)


class HttpMocker:
    """Strict in-process HTTP; use as a context manager (or the `http` fixture)."""

    def __init__(self, base_url: str = BASE_URL) -> None:
        self.base_url = base_url
        self._mocker = requests_mock.Mocker(real_http=False)
        self._expectations: list[_Expectation] = []

    def __enter__(self) -> HttpMocker:
        self._mocker.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._mocker.__exit__(kind, error, trace)
        if kind is None:
            self.assert_all_used()

    def expect(
        self, method: str, request: HttpRequest, responses: HttpResponse | Sequence[HttpResponse]
    ) -> None:
        """Answer `request` with `responses` in turn (the last one repeats)."""
        answers = [responses] if isinstance(responses, HttpResponse) else list(responses)
        matcher = self._mocker.register_uri(
            method,
            self.base_url + request.path,
            response_list=[answer.as_mock() for answer in answers],
            additional_matcher=request.matches,
        )
        self._expectations.append(_Expectation(method, request, matcher))

    def get(self, request: HttpRequest, responses: HttpResponse | Sequence[HttpResponse]) -> None:
        self.expect("GET", request, responses)

    def post(self, request: HttpRequest, responses: HttpResponse | Sequence[HttpResponse]) -> None:
        self.expect("POST", request, responses)

    def put(self, request: HttpRequest, responses: HttpResponse | Sequence[HttpResponse]) -> None:
        self.expect("PUT", request, responses)

    def delete(
        self, request: HttpRequest, responses: HttpResponse | Sequence[HttpResponse]
    ) -> None:
        self.expect("DELETE", request, responses)

    def calls(self, path: str | None = None) -> list[_RequestObjectProxy]:
        """Requests sent so far (to `path` only, if given), in order."""
        history = self._mocker.request_history
        return [r for r in history if path is None or urlsplit(r.url).path == path]

    def assert_all_used(self) -> None:
        unused = [f"{e.method} {e.request}" for e in self._expectations if not e.called]
        assert not unused, "expected requests that were never sent:\n  " + "\n  ".join(unused)


def _query(url: str) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def _normalised(query: Query) -> dict[str, list[str]]:
    return {k: sorted([v] if isinstance(v, str) else list(v)) for k, v in query.items()}
