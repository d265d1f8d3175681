"""The shared HTTP layer in milliseconds: client, error mapping, retries, guarded paginator."""

from __future__ import annotations

import pytest
from httpmock import HttpMocker, HttpRequest, HttpResponse

from scrapesync.sources.common.client import build_client
from scrapesync.sources.common.errors import ProviderAPIError, ProviderSpec
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
