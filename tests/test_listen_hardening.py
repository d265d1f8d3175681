"""`scrapesync listen` against hostile senders: a real intake on 127.0.0.1, raw sockets.

Bad lengths and bodies of unknown size are refused before the body is read (and the listener's
memory stays flat while 1 GiB is streamed at it), slow senders are cut off without holding up
anyone else, a burst of connections is served without a reset, and the providers' handlers
refuse every payload that is not of the documented shape, never logging the callback token.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from scrapesync.pipelines import listen
from scrapesync.pipelines.cli import build_parser
from scrapesync.pipelines.listen import IntakeLimits, IntakeServer
from scrapesync.sources.common.inbox import NotificationStore, WebhookRequest
from scrapesync.sources.outscraper.cli import webhook_handler
from scrapesync.sources.outscraper.webhooks import signature
from scrapesync.sources.oxylabs.callbacks import (
    CallbackerIPs,
    CallbackHandler,
    check_settings,
    parse_networks,
)
from scrapesync.sources.oxylabs.cli import ListenHandler
from scrapesync.sources.oxylabs.journal import Journal

KEY = "listen-test-key-0123456789"
TOKEN = "tok-fedcba9876543210"
GIB = 1 << 30
MIB = 1 << 20
# the oxylabs handler accepts callbacks from this sender only; 127.0.0.2 is a forger
CALLBACKER = "127.0.0.1"


class Intake:
    """A running intake with both push providers' handlers, and ways to talk to it."""

    def __init__(self, tmp_path: Path, limits: IntakeLimits) -> None:
        self.store = NotificationStore(tmp_path / "store")
        self.journal = Journal(str(tmp_path / "journal.sqlite"))
        callbacks = CallbackHandler(self.journal, TOKEN, CallbackerIPs(None, [CALLBACKER]))
        handlers: dict[str, Any] = {
            "outscraper": webhook_handler(KEY),
            "oxylabs": ListenHandler(lambda: callbacks),
        }
        self.server = IntakeServer(self.store, handlers, limits=limits).start()
        self.host, port = self.server.url.removeprefix("http://").split(":")
        self.port = int(port)

    def stored(self) -> list[str]:
        return [n.object_id for n in self.store.pending("outscraper")]

    def callbacks(self) -> list[str]:
        return [row["job_id"] for row in self.journal.query("SELECT job_id FROM callbacks")]

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout=10, source_address=(source, 0)
        )

    def raw(self, request: bytes, source: str = "127.0.0.1") -> tuple[int, bytes]:
        """Send bytes as they are; returns the answer's status and body (read to EOF)."""
        with self.connect(source) as sock:
            sock.sendall(request)
            return parse_answer(read_to_eof(sock))

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None,
             source: str = "127.0.0.1") -> int:  # fmt: skip
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=10, source_address=(source, 0)
        )
        try:
            conn.request("POST", path, body, headers or {})
            return conn.getresponse().status
        finally:
            conn.close()

    def deliver(self, payload: Any) -> int:
        """A correctly signed Outscraper webhook with this JSON payload."""
        body = orjson.dumps(payload)
        return self.post("/outscraper/hook", body, {"X-Hub-Signature-256": signature(body, KEY)})

    def healthy(self) -> bool:
        return self.raw(b"GET /health HTTP/1.0\r\n\r\n")[0] == 200


def read_to_eof(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass  # what was read before the reset is the answer
    return answer


def parse_answer(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return (int(match.group(1)) if match else 0), body


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    running = Intake(tmp_path, IntakeLimits())
    yield running
    running.server.stop()


def post_head(extra: str) -> bytes:
    return f"POST /outscraper/hook HTTP/1.1\r\nHost: x\r\n{extra}\r\n\r\n".encode()


# -- bounded bodies ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("Content-Length: -1", 400),
        ("Content-Length: abc", 400),
        ("Content-Length: 1e3", 400),
        ("Content-Length: +5", 400),
        ("Content-Length: 0x10", 400),
        ("Content-Length: 5\r\nContent-Length: 6", 400),
        ("Content-Length: 99999999999999999999999", 413),
        (f"Content-Length: {MIB + 1}", 413),
        ("Transfer-Encoding: chunked", 411),
        ("Transfer-Encoding: gzip, chunked", 411),
        ("Transfer-Encoding: gzip", 411),
    ],
)
def test_given_a_bad_or_unbounded_length_then_it_is_a_4xx_and_the_server_stays_up(
    intake: Intake, header: str, status: int
) -> None:
    answer, body = intake.raw(post_head(header) + b"5\r\nhello\r\n0\r\n\r\n")

    assert answer == status
    assert b"Traceback" not in body
    assert intake.stored() == []
    assert intake.healthy()


def test_given_a_body_of_exactly_the_limit_then_it_is_read_and_judged(intake: Intake) -> None:
    body = b" " * MIB  # JSON whitespace: unsigned, so 401, but read in full first

    assert intake.post("/outscraper/hook", body) == 401


def test_given_a_refused_body_sent_in_one_go_then_the_sender_reads_the_4xx_not_a_reset(
    intake: Intake,
) -> None:
    # a sender that writes its whole (too large) body before reading, as HTTP clients do: the
    # listener discards what still arrives for a moment before closing, else the kernel would
    # reset the connection and the sender's write would fail before it saw the 413
    outcomes = []
    for _ in range(3):
        with intake.connect() as sock:
            sock.sendall(post_head(f"Content-Length: {100 * MIB}") + b"\0" * (8 * MIB))
            outcomes.append(parse_answer(read_to_eof(sock))[0])

    assert outcomes == [413, 413, 413]


def listener_process(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    """`scrapesync listen` as its own process (so its RSS is the listener's alone)."""
    env = {**os.environ, "SOURCES__OUTSCRAPER__API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    command = "from scrapesync.pipelines.cli import main; raise SystemExit(main())"
    args = ["listen", "--port", "0", "--dir", str(tmp_path / "store")]
    with (tmp_path / "listen.log").open("w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", command, *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    assert child.stdout is not None
    first = child.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
    assert found, f"listen did not start: {first!r}"
    return child, int(found.group(1))


def stream_body(port: int, head: bytes) -> tuple[int, int]:
    """Send `head`, then up to 1 GiB of body until an answer arrives; (status, bytes sent)."""
    chunk = b"\0" * MIB
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        while sent < GIB and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # closed by the listener: its answer is read below
            sent += len(chunk)
        return parse_answer(read_to_eof(sock))[0], sent


def test_given_1_gib_streamed_at_scrapesync_listen_then_it_is_refused_before_reading_it(
    tmp_path: Path,
) -> None:
    child, port = listener_process(tmp_path)
    try:
        listener = psutil.Process(child.pid)
        assert stream_body(port, b"GET /health HTTP/1.0\r\n\r\n")[0] == 200
        before = listener.memory_info().rss
        outcomes = []
        peak = before
        for header in (
            "Content-Length: -1",
            f"Content-Length: {GIB}",
            "Transfer-Encoding: chunked",
        ):
            head = f"POST /outscraper/hook HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n".encode()
            outcomes.append(stream_body(port, head))
            peak = max(peak, listener.memory_info().rss)
        still_up = stream_body(port, b"GET /health HTTP/1.0\r\n\r\n")[0]
    finally:
        child.terminate()
        child.wait(timeout=30)

    assert [status for status, _ in outcomes] == [400, 413, 411]
    # the answer came while the sender was still streaming: the body was never waited for
    assert all(sent < GIB for _, sent in outcomes), outcomes
    assert peak - before < 50 * MIB, f"listener RSS grew by {(peak - before) / MIB:.0f} MiB"
    assert still_up == 200
    assert "Traceback" not in (tmp_path / "listen.log").read_text()


# -- slow and many senders -----------------------------------------------------------------
def closed_by_server(sock: socket.socket) -> bool:
    readable = select.select([sock], [], [], 0)[0]
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_given_slow_senders_then_they_are_cut_at_the_request_deadline_and_others_are_served(
    tmp_path: Path,
) -> None:
    # idle connections are left alone for a minute: only the request deadline can cut these
    running = Intake(tmp_path, IntakeLimits(request_timeout=1, idle_timeout=60))
    try:
        stalled = [running.connect() for _ in range(40)]
        for sock in stalled:
            sock.sendall(b"POST /outscraper/hook HTTP/1.1\r\nHost: x\r\n")
        trickler = running.connect()
        trickler.sendall(b"POST /outscraper/hook HTTP/1.1\r\nX-Slow: ")
        meanwhile = running.deliver({"id": "20250101000000abcd", "status": "SUCCESS"})

        # one header byte every 0.2 s keeps a connection "active", so waitress's idle
        # timeout would never cut it; the bound of the loop only keeps a failure finite
        trickler_cut = False
        for _ in range(150):
            try:
                trickler.sendall(b"a")
            except OSError:
                trickler_cut = True
                break
            if closed_by_server(trickler):
                trickler_cut = True
                break
            threading.Event().wait(0.2)
        stalled_cut = [closed_by_server(sock) for sock in stalled]
        after = running.deliver({"id": "20250101000000abce", "status": "SUCCESS"})
    finally:
        for sock in [*stalled, trickler]:
            sock.close()
        running.server.stop()

    assert meanwhile == 200
    assert trickler_cut
    assert all(stalled_cut)
    assert after == 200
    assert running.stored() == ["20250101000000abcd", "20250101000000abce"]


def test_given_an_idle_connection_then_it_is_closed_after_the_idle_timeout(
    tmp_path: Path,
) -> None:
    running = Intake(tmp_path, IntakeLimits(idle_timeout=1))
    try:
        with running.connect() as idle:
            idle.settimeout(30)  # a bound on a failure, not a measurement
            assert idle.recv(1) == b""
    finally:
        running.server.stop()


def test_given_more_connections_than_the_limit_then_each_waits_and_every_delivery_is_stored(
    tmp_path: Path,
) -> None:
    running = Intake(tmp_path, IntakeLimits(connections=10, threads=4))
    bodies = [orjson.dumps({"id": f"burst-{n:04d}", "status": "SUCCESS"}) for n in range(100)]
    try:
        # all 100 connect at once (the listen backlog holds those over the limit), all send,
        # then the answers are read in order
        socks = [running.connect() for _ in bodies]
        for sock, body in zip(socks, bodies, strict=True):
            head = (
                f"POST /outscraper/hook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"X-Hub-Signature-256: {signature(body, KEY)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
        statuses = []
        for sock in socks:
            statuses.append(parse_answer(read_to_eof(sock))[0])
            sock.close()
    finally:
        running.server.stop()

    assert statuses == [200] * 100
    assert sorted(running.stored()) == [f"burst-{n:04d}" for n in range(100)]


# -- the handlers: strict shapes -----------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        {"id": {"a": 1}},
        {"id": ["20250101000000abcd"]},
        {"id": True},
        {"id": 1.5},
        {"id": -3},
        {"id": ""},
        {"id": "x" * 65},
        {"id": "../../admin/keys"},
        {"id": "abc?apiKey=evil"},
        {"id": "١٢٣"},
        {"id": "20250101000000abcd", "status": {"a": 1}},
        {"id": "20250101000000abcd", "status": "x" * 33},
        {"id": "20250101000000abcd", "api_task": "yes"},
        {"status": "SUCCESS"},
        ["20250101000000abcd"],
    ],
)
def test_given_a_signed_outscraper_webhook_of_a_bad_shape_then_400_and_nothing_stored(
    intake: Intake, payload: Any
) -> None:
    assert intake.deliver(payload) == 400
    assert intake.stored() == []


@pytest.mark.parametrize(
    ("payload", "kind", "object_id"),
    [
        ({"id": "20211211132758c8e9", "status": "SUCCESS", "api_task": False}, "task", None),
        (
            {"id": "2b9aa187-281a-4d4e-a4c6-fbe941aaac34", "status": "SUCCESS", "api_task": True},
            "request",
            None,
        ),
        ({"id": 12345, "status": "SUCCESS"}, "task", "12345"),
        ({"id": "20211211132758c8e9", "status": None, "api_task": None}, "task", None),
    ],
)
def test_given_a_signed_outscraper_webhook_of_a_documented_shape_then_it_is_stored(
    intake: Intake, payload: dict[str, Any], kind: str, object_id: str | None
) -> None:
    assert intake.deliver(payload) == 200
    [note] = intake.store.pending("outscraper")
    assert (note.kind, note.object_id) == (kind, object_id or payload["id"])


def callback(intake: Intake, job: Any, path: str = f"/oxylabs/{TOKEN}",
             source: str = CALLBACKER) -> int:  # fmt: skip
    return intake.post(path, orjson.dumps(job), {"Content-Type": "application/json"}, source)


@pytest.mark.parametrize(
    "job_id",
    [
        "١٢٣",
        "\uff11\uff12\uff13",
        "12a",
        "",
        " 123",
        "123\n",
        "1" * 31,
        -5,
        1.0,
        True,
        None,
        {"a": 1},
    ],
)
def test_given_an_oxylabs_callback_whose_id_is_not_ascii_digits_then_400_and_nothing_stored(
    intake: Intake, job_id: Any
) -> None:
    assert callback(intake, {"id": job_id, "status": "done"}) == 400
    assert intake.callbacks() == []


def test_given_an_oxylabs_callback_with_a_numeric_id_then_it_is_stored_as_digits_text(
    intake: Intake,
) -> None:
    assert callback(intake, {"id": 7300439540206948353, "status": "done"}) == 200
    assert callback(intake, {"id": "7300439540206948354", "status": "done"}) == 200
    assert sorted(intake.callbacks()) == ["7300439540206948353", "7300439540206948354"]


def test_given_rejected_callbacks_then_the_log_names_sender_and_reason_but_never_the_token(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        statuses = [
            callback(intake, {"id": "1", "status": "done"}, source="127.0.0.2"),  # forger
            callback(intake, {"id": "2", "status": "done"}, path=f"/oxylabs/{TOKEN}x"),
            callback(intake, "<html>"),
            callback(intake, {"id": "١٢٣"}),
        ]

    assert statuses == [403, 404, 400, 400]
    lines = [r.getMessage() for r in caplog.records]
    rejected = [line for line in lines if "rejected oxylabs webhook" in line]
    assert len(rejected) == 4
    assert all("/oxylabs/***" in line for line in rejected)
    assert "from 127.0.0.2" in rejected[0]
    assert not [line for line in lines if TOKEN in line]
    assert intake.callbacks() == []


# -- the callbacker allow-list setting -----------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        '["127.0.0.1"]',
        '["127.0.0.1", "192.0.2.0/24"]',
        "127.0.0.1",
        " 127.0.0.1 , 192.0.2.0/24 ",
        ["127.0.0.1", "192.0.2.0/24"],
    ],
)
def test_given_the_callbacker_ips_in_any_documented_form_then_they_are_the_allow_list(
    value: Any,
) -> None:
    ips = CallbackerIPs(None, value)

    assert ips.allowed("127.0.0.1")
    assert not ips.allowed("127.0.0.2")


@pytest.mark.parametrize(
    "value", ['["127.0.0.1", "nonsense"]', "127.0.0.1,,", '["127.0.0.1"', "[1, 2]", "10.0.0.300"]
)
def test_given_a_bad_callbacker_ips_entry_then_it_is_a_config_error_naming_the_setting(
    value: str,
) -> None:
    with pytest.raises(ValueError, match=r"sources\.oxylabs\.callbacker_ips"):
        parse_networks(value)


def oxylabs_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ips: str) -> None:
    monkeypatch.setenv("SOURCES__OXYLABS__USERNAME", "user")
    monkeypatch.setenv("SOURCES__OXYLABS__PASSWORD", "pass-0123456789")
    monkeypatch.setenv("SOURCES__OXYLABS__CALLBACK_TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__OXYLABS__JOURNAL_PATH", str(tmp_path / "journal.sqlite"))
    monkeypatch.setenv("SOURCES__OXYLABS__CALLBACKER_IPS", ips)


def test_given_the_callbacker_ips_as_a_json_env_list_then_listen_accepts_those_senders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oxylabs_env(monkeypatch, tmp_path, '["127.0.0.1"]')
    check_settings()
    server = IntakeServer(NotificationStore(tmp_path / "store"), {"oxylabs": ListenHandler()})
    server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", f"/oxylabs/{TOKEN}", orjson.dumps({"id": "42", "status": "done"}))
        status = conn.getresponse().status
        conn.close()
    finally:
        server.stop()

    assert status == 200
    rows = Journal(str(tmp_path / "journal.sqlite")).query("SELECT job_id FROM callbacks")
    assert [row["job_id"] for row in rows] == ["42"]


def test_given_a_bad_callbacker_ips_env_value_then_the_startup_check_names_it_and_no_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oxylabs_env(monkeypatch, tmp_path, '["127.0.0.1", "not-an-ip"]')

    with pytest.raises(ValueError, match=r"sources\.oxylabs\.callbacker_ips.*not-an-ip"):
        check_settings()
    # a server started anyway answers "not configured" (503, retry later), not 500 per callback
    handler = ListenHandler()
    request = WebhookRequest("oxylabs", f"/{TOKEN}", {}, b'{"id": "1"}', "127.0.0.1")
    server = IntakeServer(NotificationStore(tmp_path / "store"), {"oxylabs": handler})
    try:
        assert server.receive(request)[0] == 503
    finally:
        server.stop()


def test_given_a_handler_whose_startup_check_fails_then_listen_exits_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checked: list[str] = []

    class Checked:
        def __call__(self, _: WebhookRequest) -> list[Any]:
            return []

        def prepare(self) -> None:
            checked.append("prepared")
            raise ValueError("`sources.example.setting`: 'nonsense' is not an IP address")

    monkeypatch.setattr(listen, "provider_handlers", lambda: {"example": Checked()})
    args = build_parser().parse_args(["listen", "--port", "0", "--dir", str(tmp_path)])

    assert listen.cmd_listen(args) == 2
    assert checked == ["prepared"]
    err = capsys.readouterr().err
    assert "sources.example.setting" in err
    assert "Traceback" not in err
