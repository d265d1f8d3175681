"""The one redaction (sources/common/redact.py): no secret survives, in text, URLs or logs."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus, urlencode

import pytest
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth, HttpBasicAuth
from httpmock import HttpMocker, HttpRequest, HttpResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapesync.sources.common.client import build_client
from scrapesync.sources.common.errors import ProviderAPIError, ProviderSpec
from scrapesync.sources.common.redact import (
    MASK,
    RedactingFilter,
    forget_secrets,
    redact,
    redact_url,
    register_configured_secrets,
    register_request_secrets,
    register_secret,
    register_secret_path,
    register_setting_secrets,
)

# a secret as a provider issues it: printable, no surrounding space; `*` is left out because
# a secret made of the mask's own character could be rebuilt by masking (`a***` in `aa***`)
SECRET_CHARS = st.characters(
    min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")
).filter(lambda c: c != "*")
secrets = st.text(SECRET_CHARS, min_size=4, max_size=40)
texts = st.text(max_size=60)
SPEC = ProviderSpec(name="acme", parse_error=lambda body: body.get("message"))


@pytest.fixture(autouse=True)
def no_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def forms(secret: str) -> list[str]:
    """The ways a secret shows up in a message: as is, URL-encoded, JSON-escaped, repr'd."""
    return [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    ]


@settings(max_examples=200, deadline=None)
@given(secret=secrets, before=texts, after=texts, form=st.integers(0, 5))
def test_given_a_registered_secret_in_any_text_then_it_never_survives(
    secret: str, before: str, after: str, form: int
) -> None:
    forget_secrets()
    register_secret(secret)
    shown = forms(secret)[form]

    out = redact(f"{before}{shown}{after}")

    assert secret not in out
    assert shown not in out


@settings(max_examples=200, deadline=None)
@given(secret=secrets, name=st.sampled_from(["apiKey", "api_key", "token", "password", "sig"]))
def test_given_a_url_with_a_secret_query_value_then_redact_url_masks_it_unregistered(
    secret: str, name: str
) -> None:
    forget_secrets()
    url = "https://api.example.test/v1/items?" + urlencode({"page": "2", name: secret})

    out = redact_url(url)

    assert quote_plus(secret) not in out
    assert secret not in out
    assert "page=2" in out
    assert f"{name}={MASK}" in out


@settings(max_examples=200, deadline=None)
@given(user=st.from_regex(r"[a-z]{1,12}", fullmatch=True), password=secrets, before=texts)
def test_given_a_url_with_userinfo_in_text_then_its_password_never_survives(
    user: str, password: str, before: str
) -> None:
    forget_secrets()
    url = f"postgresql://{user}:{quote(password, safe='')}@db.example.test:5432/warehouse"

    out = redact(f"{before} {url} failed")

    assert quote(password, safe="") not in out
    assert "db.example.test:5432/warehouse" in out


@settings(max_examples=100, deadline=None)
@given(
    user=st.from_regex(r"[a-z]{1,12}", fullmatch=True),
    password=secrets,
    quoting=st.sampled_from(["{}", "'{}'", '"{}"']),
)
def test_given_an_authorization_header_then_its_credential_is_masked_unregistered(
    user: str, password: str, quoting: str
) -> None:
    forget_secrets()
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()

    out = redact("headers: {'Authorization': " + quoting.format(f"Basic {basic}") + "}")
    bearer = redact(f"sent Authorization: Bearer {basic}")

    assert basic not in out
    assert basic not in bearer
    assert f"Basic {MASK}" in out
    assert f"Bearer {MASK}" in bearer


def test_given_the_request_that_carried_a_basic_header_then_its_password_is_known() -> None:
    header = "Basic " + base64.b64encode(b"scraper-bot:pa55-Word!9").decode()

    register_request_secrets({"Authorization": header, "Accept": "application/json"})

    assert redact("wrong password pa55-Word!9 for scraper-bot") == (
        f"wrong password {MASK} for scraper-bot"
    )
    assert redact("application/json") == "application/json"


def test_given_an_api_key_header_or_a_secret_query_value_then_both_become_known() -> None:
    register_request_secrets({"X-API-KEY": "key-3b7e9c1d"}, "https://h/v1?token=tok-81f2e6a0&a=1")

    assert redact("got key-3b7e9c1d and tok-81f2e6a0") == f"got {MASK} and {MASK}"


@pytest.mark.parametrize(
    "text",
    [
        'body {"api_key": "k 1 2 3", "ok": false}',
        "X-API-KEY: k123456",
        "callback_token=k123456&x=1",
        "{'password': 'k123456'}",
    ],
)
def test_given_a_value_of_a_secret_named_key_then_it_is_masked_unregistered(text: str) -> None:
    out = redact(text)

    assert "k123456" not in out
    assert "k 1 2 3" not in out
    assert MASK in out


def test_given_words_about_secrets_then_the_text_is_unchanged() -> None:
    text = (
        "check the credential in `sources.acme.api_key` (.dlt/secrets.toml or env "
        "SOURCES__ACME__API_KEY); the callback token was rejected"
    )

    assert redact(text) == text


def test_given_a_secret_path_prefix_then_the_next_segment_is_masked_in_every_url() -> None:
    register_secret_path("hooks-test")

    out = redact("callback https://me.example.test/hooks-test/3f9a0c1b2d4e5f60718293a4/x?a=1 ok")

    assert out == f"callback https://me.example.test/hooks-test/{MASK}/x?a=1 ok"


def test_given_configured_secrets_then_secret_named_settings_are_known_and_others_not() -> None:
    register_configured_secrets(
        {
            "SOURCES__ACME__API_KEY": "acme-key-5d1e",
            "SOURCES__ACME__CALLBACK_TOKEN": "cb-token-77aa",
            "DESTINATION__POSTGRES__CREDENTIALS": "postgresql://loader:pg-pw-9c1@db/w",
            "SOURCES__ACME__BASE_URL": "https://api.acme.test/v1",
            "PWD": "/home/runner/work",
        }
    )

    out = redact("acme-key-5d1e cb-token-77aa pg-pw-9c1 https://api.acme.test/v1 /home/runner/work")

    assert out == f"{MASK} {MASK} {MASK} https://api.acme.test/v1 /home/runner/work"


def test_given_a_log_record_with_secret_args_and_exception_then_the_output_holds_none() -> None:
    register_secret("s3cr3t-log-key")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test_redact.records")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("calling with %s", "s3cr3t-log-key")
        try:
            raise RuntimeError("rejected key s3cr3t-log-key")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)

    output = stream.getvalue()
    assert "s3cr3t-log-key" not in output
    assert "calling with ***\nfailed\n" in output
    assert output.endswith("RuntimeError: rejected key ***\n")


def test_given_a_401_body_that_echoes_the_key_then_the_error_never_holds_it(
    http: HttpMocker,
) -> None:
    key = "sk_live_4f1b2c3d5e6f"
    http.get(
        HttpRequest("/v1/items"),
        HttpResponse(status=401, json={"message": f"invalid API key {key}"}),
    )
    client = build_client(SPEC, http.base_url, BearerTokenAuth(token=key))

    with pytest.raises(ProviderAPIError) as raised:
        client.get("/v1/items")

    assert key not in str(raised.value)
    assert key not in raised.value.detail
    assert f"invalid API key {MASK}" in str(raised.value)


def test_given_a_basic_auth_401_that_echoes_the_password_then_the_error_never_holds_it(
    http: HttpMocker,
) -> None:
    http.get(
        HttpRequest("/v1/items"),
        HttpResponse(status=401, json={"message": "user bot / password Pw-0c9b8a7 refused"}),
    )
    client = build_client(SPEC, http.base_url, HttpBasicAuth("bot", "Pw-0c9b8a7"))

    with pytest.raises(ProviderAPIError) as raised:
        client.get("/v1/items")

    assert "Pw-0c9b8a7" not in str(raised.value)


def test_given_a_provider_section_then_its_secret_settings_are_asked_for_and_registered() -> None:
    store = {"sources.acme.password": "vault-pw-31c7", "sources.acme.group_ids": "g-public"}
    asked: list[str] = []

    def lookup(key: str) -> str | None:
        asked.append(key)
        return store.get(key)

    register_setting_secrets("sources.acme", ("username", "password", "group_ids"), lookup)

    assert "sources.acme.api_key" in asked
    assert "sources.acme.group_ids" not in asked
    assert redact("vault-pw-31c7 g-public") == f"{MASK} g-public"
