"""The shared HTTP layer in milliseconds: client, error mapping, retries, guarded paginator."""

from __future__ import annotations

import time

import orjson
import pytest
from httpmock import HttpMocker, HttpRequest, HttpResponse
from requests import Response

from scrapesync.sources.common.client import build_client
from scrapesync.sources.common.errors import ProviderAPIError, ProviderSpec, is_streamed
from scrapesync.sources.common.paginators import GuardedCursorPaginator
from scrapesync.sources.common.stats import RequestStats

SPEC = ProviderSpec(
    name="acme",
    parse_error=lambda body: body.get("message") if isinstance(body, dict) else None,
    not_found_hints=((r"/items/(?P<item>[^/]+)$", "item {item} does not exist"),),
)


def cursor_pages(http: HttpMocker, stats: RequestStats) -> list[list[dict[str, int]]]:
    client = build_client(SPEC, http.base_url, None, stats=stats)
    paginator = GuardedCursorPaginator("acme", cursor_path="next", cursor_param="cursor")
    return list(client.paginate("/items", paginator=paginator, data_selector="data"))


def test_given_cursor_pages_ending_in_an_empty_page_then_every_page_is_read_once(
    http: HttpMocker,
) -> None:
    http.get(HttpRequest("/items", query={}), HttpResponse(json={"data": [{"id": 1}], "next": "a"}))
    http.get(
        HttpRequest("/items", query={"cursor": "a"}),
        HttpResponse(json={"data": [{"id": 2}], "next": "b"}),
    )
    http.get(
        HttpRequest("/items", query={"cursor": "b"}), HttpResponse(json={"data": [], "next": "c"})
    )
    stats = RequestStats()

    pages = cursor_pages(http, stats)

    assert [row["id"] for page in pages for row in page] == [1, 2]
    assert stats.requests == 3  # the empty page ends the read; its cursor is never followed


def test_given_a_cursor_handed_back_twice_then_the_read_stops_with_a_clear_error(
    http: HttpMocker,
) -> None:
    http.get(HttpRequest("/items", query={}), HttpResponse(json={"data": [{"id": 1}], "next": "a"}))
    http.get(
        HttpRequest("/items", query={"cursor": "a"}),
        HttpResponse(json={"data": [{"id": 2}], "next": "a"}),
    )

    with pytest.raises(ProviderAPIError, match="pagination loops: cursor 'a'"):
        cursor_pages(http, RequestStats())


def test_given_a_503_then_a_200_then_the_request_is_retried_and_counted(http: HttpMocker) -> None:
    http.get(
        HttpRequest("/items", query={}),
        [HttpResponse(status=503), HttpResponse(json={"data": [{"id": 1}], "next": None})],
    )
    stats = RequestStats()

    pages = cursor_pages(http, stats)

    assert pages == [[{"id": 1}]]
    assert (stats.requests, stats.retries) == (2, 1)


def test_given_a_401_then_the_error_names_provider_path_and_the_setting_to_fix(
    http: HttpMocker,
) -> None:
    http.get(HttpRequest("/items", query={}), HttpResponse(status=401, json={"message": "bad key"}))

    with pytest.raises(ProviderAPIError) as caught:
        cursor_pages(http, RequestStats())

    text = str(caught.value)
    assert text.startswith("acme: GET /items returned HTTP 401: bad key")
    assert "SOURCES__ACME__API_KEY" in text


def test_given_a_404_on_an_item_then_the_hint_names_the_unknown_id(http: HttpMocker) -> None:
    http.get(HttpRequest("/items/x1"), HttpResponse(status=404, json={"message": "nope"}))
    client = build_client(SPEC, http.base_url, None)

    with pytest.raises(ProviderAPIError, match="item x1 does not exist"):
        client.get("/items/x1")


def test_given_html_with_status_200_then_it_is_a_malformed_response(http: HttpMocker) -> None:
    http.get(
        HttpRequest("/items", query={}),
        HttpResponse(body="<html>maintenance</html>", headers={"Content-Type": "text/html"}),
    )

    with pytest.raises(ProviderAPIError, match="malformed response: the body is not JSON"):
        cursor_pages(http, RequestStats())


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits dlt's retry layer sleeps, recorded instead of slept (tenacity calls
    `time.sleep`), so backoff and `Retry-After` are asserted without spending them."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_given_two_503s_then_a_200_then_every_attempt_is_counted_once(
    http: HttpMocker, waits: list[float]
) -> None:
    http.get(
        HttpRequest("/items"),
        [HttpResponse(status=503), HttpResponse(status=503), HttpResponse(json={"id": 1})],
    )
    stats = RequestStats()

    body = build_client(SPEC, http.base_url, None, stats=stats).get("/items").json()

    assert body == {"id": 1}
    assert (stats.requests, stats.retries, stats.throttled) == (3, 2, 0)
    assert len(waits) == 2


def test_given_503s_past_the_retries_then_the_error_says_it_gave_up(
    http: HttpMocker, waits: list[float]
) -> None:
    http.get(HttpRequest("/items"), HttpResponse(status=503, json={"message": "down"}))
    stats = RequestStats()

    with pytest.raises(ProviderAPIError) as caught:
        build_client(SPEC, http.base_url, None, stats=stats).get("/items")

    assert str(caught.value).startswith(
        "acme: GET /items returned HTTP 503: down (gave up after the configured retries)"
    )
    assert stats.requests == 4  # RUNTIME__REQUEST_MAX_ATTEMPTS=4 in tests/conftest.py
    assert len(http.calls("/items")) == 4


def test_given_a_429_asking_for_a_longer_wait_than_allowed_then_it_fails_at_once(
    http: HttpMocker, waits: list[float]
) -> None:
    http.get(
        HttpRequest("/items"),
        HttpResponse(status=429, json={"message": "slow down"}, headers={"Retry-After": "3600"}),
    )
    stats = RequestStats()

    with pytest.raises(ProviderAPIError) as caught:
        build_client(SPEC, http.base_url, None, stats=stats).get("/items")

    text = str(caught.value)
    assert text.startswith(
        "acme: GET /items returned HTTP 429: slow down (the provider asks to wait 3600 s, "
        "more than the 300 s this sync will wait)"
    )
    assert "RUNTIME__REQUEST_MAX_RETRY_DELAY" in text
    assert (stats.requests, stats.throttled, waits) == (1, 1, [])


def test_given_a_429_with_retry_after_0_then_it_backs_off_instead_of_spinning(
    http: HttpMocker, waits: list[float]
) -> None:
    http.get(
        HttpRequest("/items"),
        [HttpResponse(status=429, headers={"Retry-After": "0"}), HttpResponse(json={"id": 1})],
    )
    stats = RequestStats()

    body = build_client(SPEC, http.base_url, None, stats=stats).get("/items").json()

    assert body == {"id": 1}
    assert (stats.requests, stats.retries, stats.throttled) == (2, 1, 1)
    assert waits == [pytest.approx(0.05)]  # the backoff (factor 0.05 in tests/conftest.py)


def test_given_a_429_with_a_short_retry_after_then_the_wait_is_the_providers(
    http: HttpMocker, waits: list[float]
) -> None:
    http.get(
        HttpRequest("/items"),
        [HttpResponse(status=429, headers={"Retry-After": "7"}), HttpResponse(json={"id": 1})],
    )

    assert build_client(SPEC, http.base_url, None).get("/items").json() == {"id": 1}
    assert waits == [7.0]


def test_given_pages_then_each_body_is_decoded_once_although_dlt_reads_it_twice(
    http: HttpMocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    http.get(HttpRequest("/items", query={}), HttpResponse(json={"data": [{"id": 1}], "next": "a"}))
    http.get(
        HttpRequest("/items", query={"cursor": "a"}),
        HttpResponse(json={"data": [{"id": 2}], "next": None}),
    )
    decoded: list[bytes] = []
    real_loads = orjson.loads

    def counting_loads(content: bytes) -> object:
        decoded.append(content)
        return real_loads(content)

    monkeypatch.setattr(orjson, "loads", counting_loads)

    client = build_client(SPEC, http.base_url, None)
    paginator = GuardedCursorPaginator("acme", cursor_path="next", cursor_param="cursor")
    pages = list(client.paginate("/items", paginator=paginator, data_selector="data"))

    assert [row["id"] for page in pages for row in page] == [1, 2]
    assert len(decoded) == 2  # one per page: the data selector and the paginator share it
    assert pages[0].response.json() is pages[0].response.json()


def test_given_a_json_body_cut_short_then_it_is_a_malformed_response(http: HttpMocker) -> None:
    http.get(
        HttpRequest("/items"),
        HttpResponse(body='{"data": [{"id": 1}', headers={"Content-Type": "application/json"}),
    )
    response = build_client(SPEC, http.base_url, None).get("/items")

    with pytest.raises(ProviderAPIError) as caught:
        response.json()

    text = str(caught.value)
    assert text.startswith("acme: GET /items returned HTTP 200: malformed response: the body is")
    assert "Content-Type application/json" in text
    assert "check `base_url`" in text


def test_given_hooks_of_the_caller_then_they_run_after_the_clients_own_once(
    http: HttpMocker,
) -> None:
    http.get(HttpRequest("/items"), HttpResponse(json={"id": 1}))
    http.get(HttpRequest("/items/x1"), HttpResponse(status=404, json={"message": "nope"}))
    stats = RequestStats()
    client = build_client(SPEC, http.base_url, None, stats=stats)
    seen: list[int] = []

    def check(response: Response, *_: object, **__: object) -> None:
        seen.append(stats.requests)  # the client's hook has counted this answer already

    # callers that list the client's own hook too (as they had to) must not count twice
    client.get("/items", hooks={"response": [client._on_response, check]})
    with pytest.raises(ProviderAPIError, match="item x1 does not exist"):
        client.get("/items/x1", hooks={"response": [check]})  # status errors come first

    assert seen == [1]
    assert stats.requests == 2


def test_given_stream_then_the_body_is_left_for_the_reader(http: HttpMocker) -> None:
    http.get(HttpRequest("/files/a.csv"), HttpResponse(body="a,b\n1,2\n"))
    stats = RequestStats()
    client = build_client(SPEC, http.base_url, None, stats=stats)

    with client.request(f"{http.base_url}/files/a.csv", stream=True) as response:
        assert is_streamed(response)
        assert b"".join(response.iter_content(4)) == b"a,b\n1,2\n"

    assert stats.requests == 1


def test_given_proxy_environment_then_every_request_honours_it_as_requests_would(
    http: HttpMocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the client reads the environment once per host, not per request: the answer must stay
    # the one `requests` gives, for every request of the session
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:3128")
    http.get(HttpRequest("/items", query={}), HttpResponse(json={"data": [{"id": 1}]}))
    proxied = build_client(SPEC, http.base_url, None)
    for _ in range(2):
        proxied.get("/items")
    monkeypatch.setenv("NO_PROXY", "api.test")  # a new client (a new sync) reads it again
    build_client(SPEC, http.base_url, None).get("/items")

    assert [call.proxies.get("http") for call in http.calls()] == [
        "http://proxy.corp:3128",
        "http://proxy.corp:3128",
        None,
    ]
