"""Fuzzing `scrapesync listen` with raw HTTP requests (Hypothesis), against a real intake.

Each example is one request written byte by byte on a fresh connection: a method, a path
(the push providers' routes with right and wrong secrets, and junk), an HTTP version, headers
(lengths right, wrong and malformed, transfer encodings, signatures right and wrong, junk) and a
body (signed webhooks of good and bad shapes, callbacks, bytes). Properties: every answer is a
2xx or a 4xx (a request whose framing is complete always gets one; one left incomplete may
instead be closed unanswered), the server stays up, and after the run the stores hold nothing
but notifications that were sent with a valid signature or the callback token.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrapesync.pipelines.listen import IntakeLimits, IntakeServer
from scrapesync.sources.common.inbox import NotificationStore
from scrapesync.sources.outscraper.cli import webhook_handler
from scrapesync.sources.outscraper.webhooks import signature
from scrapesync.sources.oxylabs.callbacks import CallbackerIPs, CallbackHandler
from scrapesync.sources.oxylabs.cli import ListenHandler
from scrapesync.sources.oxylabs.journal import Journal

KEY = "fuzz-signing-key-0123456789"
TOKEN = "tok-0f1e2d3c4b5a6978"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same 200 requests in every run: a CI failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Target:
    """The intake under fuzz, and what was legitimately sent to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = NotificationStore(tmp_path / "store")
        self.journal = Journal(str(tmp_path / "journal.sqlite"))
        callbacks = CallbackHandler(self.journal, TOKEN, CallbackerIPs(None, ["127.0.0.1"]))
        handlers: dict[str, Any] = {
            "outscraper": webhook_handler(KEY),
            "oxylabs": ListenHandler(lambda: callbacks),
        }
        # short deadlines: a request the fuzzer left incomplete is closed within ~2 s
        limits = IntakeLimits(request_timeout=1, idle_timeout=1, max_body_bytes=64 * 1024)
        self.server = IntakeServer(self.store, handlers, limits=limits).start()
        host, port = self.server.url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.signed_ids: set[str] = set()
        self.token_ids: set[str] = set()
        self.answers: list[int] = []

    def exchange(self, request: bytes) -> int | None:
        """Send; the status of the first answer, or None if closed without one."""
        with socket.create_connection(self.address, timeout=10) as sock:
            # refused mid-body: the answer (if any) is still readable
            with contextlib.suppress(OSError):
                sock.sendall(request)
            return first_status(sock)


def first_status(sock: socket.socket) -> int | None:
    received = b""
    try:
        while not STATUS_LINE.match(received) and len(received) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    match = STATUS_LINE.match(received)
    assert match or not received, f"not an HTTP answer: {received[:200]!r}"
    return int(match.group(1)) if match else None


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    running = Target(tmp_path)
    yield running
    running.server.stop()


# -- what a request is made of --------------------------------------------------------------
TOKENISH = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=24)
JUNK_BYTES = st.binary(max_size=64)
IDS: Any = st.one_of(
    st.sampled_from(
        ["20211211132758c8e9", "2b9aa187-281a-4d4e-a4c6-fbe941aaac34", "7300439540206948353"]
    ),
    st.from_regex(r"[A-Za-z0-9_-]{1,70}", fullmatch=True),
    st.integers(min_value=-5, max_value=10**31),
    st.text(max_size=20),
    st.sampled_from(["١٢٣", "../../admin/keys", "x?apiKey=evil", "", True, None, 1.5]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
PAYLOADS = st.one_of(
    st.fixed_dictionaries(
        {"id": IDS},
        optional={
            "status": st.one_of(st.sampled_from(["SUCCESS", "done", "FAILED"]), IDS),
            "api_task": st.one_of(st.booleans(), st.none(), st.text(max_size=4)),
        },
    ),
    st.lists(IDS, max_size=3),
    IDS,
)
PROVIDER_PATHS = st.one_of(
    st.sampled_from(
        ["/outscraper/hook", "/outscraper/", f"/oxylabs/{TOKEN}", f"/oxylabs/{TOKEN}/", "/health"]
    ),
    st.builds(lambda t: f"/oxylabs/{t}", TOKENISH),
    st.builds(lambda t: f"/{t}", TOKENISH),
)


GENUINE_IDS = st.one_of(
    st.from_regex(r"20[0-9]{12}[0-9a-f]{4}", fullmatch=True),
    st.uuids().map(str),
    st.from_regex(r"[0-9]{19}", fullmatch=True),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """One raw request, and what the test must know about it (is it signed, complete).

    One in four is a genuine delivery (a signed webhook or a callback with the token, framed
    right), its headers still fuzzed, so that the run also stores things; the rest are drawn
    freely.
    """
    genuine = draw(st.integers(0, 3)) == 0

    def pick(strategy: st.SearchStrategy[Any], value: Any) -> Any:
        return value if genuine else draw(strategy)

    method = pick(
        st.sampled_from(["POST"] * 6 + ["GET", "PUT", "HEAD", "OPTIONS", "get", "P O"]), "POST"
    )
    path = (
        draw(st.sampled_from(["/outscraper/hook", f"/oxylabs/{TOKEN}"]))
        if genuine
        else draw(PROVIDER_PATHS)
    )
    version = pick(
        st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0", "HTTP/2.0", "HTTP/x", ""]), "HTTP/1.1"
    )
    payload = pick(PAYLOADS, {"id": draw(GENUINE_IDS), "status": "SUCCESS"})
    body = (
        json.dumps(payload).encode() if pick(st.booleans(), True) else draw(st.binary(max_size=300))
    )
    signed = pick(st.booleans(), True)
    headers: list[tuple[str, str]] = [("Host", "127.0.0.1")]
    if signed:
        headers.append(("X-Hub-Signature-256", signature(body, KEY)))
    elif draw(st.booleans()):
        headers.append(("X-Hub-Signature-256", draw(TOKENISH)))
    # mostly right; now and then wrong, malformed, or longer than the body (which leaves the
    # request incomplete: the server waits for the rest until its request deadline)
    kind = pick(st.sampled_from(["exact"] * 8 + ["none", "bad", "short", "long"]), "exact")
    length = {
        "exact": str(len(body)),
        "none": None,
        "bad": draw(st.sampled_from(["-1", "abc", "1e3", "", " 1", f"{len(body)}, {len(body)}"])),
        "short": str(draw(st.integers(0, max(0, len(body) - 1)))),
        "long": str(draw(st.integers(len(body) + 1, 10**12))),
    }[kind]
    if length is not None:
        headers.append(("Content-Length", length))
    encoding = pick(
        st.one_of(st.none(), st.none(), st.sampled_from(["chunked", "gzip", "x"])), None
    )
    if encoding is not None:
        headers.append(("Transfer-Encoding", encoding))
    extra = draw(st.lists(st.tuples(TOKENISH, TOKENISH), max_size=3))
    headers.extend(extra)
    head = f"{method} {path} {version}".rstrip() + "\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    raw = head.encode() + body
    if not genuine and draw(st.integers(0, 9)) == 0:  # now and then, bytes no client sends
        raw = draw(JUNK_BYTES) + raw
    # complete framing: a request the server has everything of, so it must answer it
    complete = (
        raw.startswith(method.encode())
        and method in ("POST", "GET", "PUT", "HEAD", "OPTIONS")
        and version in ("HTTP/1.1", "HTTP/1.0")
        and encoding is None
        and (length == str(len(body)) or (length is None and not body))
    )
    ids = _ids(payload) if body == json.dumps(payload).encode() else set()
    return raw, {
        "signed": signed and path.startswith("/outscraper/"),
        "token": path.strip("/") == f"oxylabs/{TOKEN}",
        "ids": ids,
        "complete": complete,
    }


def _ids(payload: Any) -> set[str]:
    if isinstance(payload, dict) and not isinstance(payload.get("id"), dict | list):
        return {str(payload.get("id"))}
    return set()


# -- the property ---------------------------------------------------------------------------
def test_given_any_raw_request_then_only_2xx_or_4xx_and_nothing_unsigned_is_stored(
    target: Target,
) -> None:
    @FUZZ
    @given(request=requests())
    def one_request(request: tuple[bytes, dict[str, Any]]) -> None:
        raw, sent = request
        if sent["signed"]:
            target.signed_ids |= sent["ids"]
        if sent["token"]:
            target.token_ids |= sent["ids"]

        status = target.exchange(raw)

        if status is None:
            assert not sent["complete"], f"a complete request got no answer: {raw[:300]!r}"
            return
        target.answers.append(status)
        assert 200 <= status < 300 or 400 <= status < 500, f"{status} for {raw[:300]!r}"

    one_request()

    assert target.exchange(b"GET /health HTTP/1.0\r\n\r\n") == 200
    stored = {n.object_id for n in target.store.pending("outscraper")}
    assert stored <= target.signed_ids, stored - target.signed_ids
    callbacks = {r["job_id"] for r in target.journal.query("SELECT job_id FROM callbacks")}
    assert callbacks <= target.token_ids, callbacks - target.token_ids
    # the run reached the handlers and stored something: the properties were put to the test
    assert stored
    assert {200, 400, 401, 404, 411, 413} <= set(target.answers), sorted(set(target.answers))
