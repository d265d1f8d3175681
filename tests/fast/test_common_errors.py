"""The one malformed-response error (sources/common/errors.py), from a response or an item."""

from __future__ import annotations

from httpmock import HttpMocker, HttpRequest, HttpResponse

from scrapesync.sources.common.client import build_client
from scrapesync.sources.common.errors import (
    MALFORMED_RESPONSE_HINT,
    ProviderSpec,
    malformed_item,
    malformed_response,
)

SPEC = ProviderSpec(name="acme", parse_error=lambda _: None)


def test_given_a_read_body_then_the_error_quotes_its_type_and_start(http: HttpMocker) -> None:
    http.get(HttpRequest("/v1/items"), HttpResponse(json={"items": "none"}))
    response = build_client(SPEC, f"{http.base_url}/v1", None).get("/items")

    error = malformed_response(SPEC, response, "items is not a list", f"{http.base_url}/v1")

    assert str(error) == (
        "acme: GET /items returned HTTP 200: malformed response: items is not a list "
        """(Content-Type application/json; body starts '{"items":"none"}')"""
        f"\n  How to fix: {MALFORMED_RESPONSE_HINT}"
    )


def test_given_a_streamed_body_then_it_is_not_read_and_the_hint_can_be_the_callers(
    http: HttpMocker,
) -> None:
    http.get(
        HttpRequest("/files/a"),
        HttpResponse(body="<html>gateway</html>", headers={"Content-Type": "text/html"}),
    )
    response = build_client(SPEC, http.base_url, None).request("/files/a", stream=True)

    error = malformed_response(SPEC, response, "an HTML page (starts b'<html>')", hint="re-run")

    assert error.detail == (
        "malformed response: an HTML page (starts b'<html>') (Content-Type text/html)"
    )
    assert (error.hint, error.status) == ("re-run", 200)
    assert response.raw.read() == b"<html>gateway</html>"  # still there for its reader


def test_given_a_bad_item_then_the_error_says_nothing_was_loaded_unless_told_otherwise() -> None:
    synced = malformed_item("acme", "/items", "id 'x' is not an integer")
    action = malformed_item(
        "acme", "/items/preview", "the preview has no token", "POST", hint="nothing was deleted"
    )

    assert str(synced) == (
        "acme: GET /items returned HTTP 200: malformed response: id 'x' is not an integer"
        "\n  How to fix: nothing of this sync was loaded; retry later or report it to acme"
    )
    assert (action.method, action.detail, action.hint) == (
        "POST",
        "malformed response: the preview has no token",
        "nothing was deleted",
    )
