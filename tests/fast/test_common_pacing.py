"""The one rate limiter (sources/common/pacing.py): its guarantee, holds and the paced transport.

A fake clock drives the limiter where the test is about *when* requests start, so nothing
waits for real; one test keeps real threads and the real clock for thread safety.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import requests_mock
from requests import Response
from requests.structures import CaseInsensitiveDict

from scrapesync.sources.common.client import ProviderRESTClient, build_client
from scrapesync.sources.common.errors import ProviderSpec
from scrapesync.sources.common.pacing import RateLimiter, install_pacing, quota_exhausted
from scrapesync.sources.common.stats import RequestStats

BASE_URL = "http://paced.test"
SPEC = ProviderSpec(name="acme", parse_error=lambda _: None)


@dataclass
class FakeClock:
    """A monotonic clock that moves only when the limiter waits on it."""

    now: float = 0.0
    waits: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def busiest_window(times: list[float], window: float) -> int:
    """The most starts in any half-open window of `window` seconds."""
    times = sorted(times)
    return max(
        sum(1 for other in times[index:] if other < start + window)
        for index, start in enumerate(times)
    )


def starts(limiter: RateLimiter, clock: FakeClock, count: int, duration: float) -> list[float]:
    """Run `count` requests one after another, each `duration` long; their start times."""
    started = []
    for _ in range(count):
        limiter.acquire()
        started.append(clock.now)
        clock.now += duration
        limiter.release()
    return started


def answer(status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers or {})
    return response


def test_given_threads_then_at_most_limit_requests_start_in_any_window() -> None:
    limiter = RateLimiter(limit=3, window=0.1)
    started: list[float] = []
    lock = threading.Lock()

    def request() -> None:
        limiter.acquire()
        with lock:
            started.append(time.monotonic())
        time.sleep(0.005)
        limiter.release()

    threads = [threading.Thread(target=request) for _ in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(started) == 9
    assert busiest_window(started, 0.1) <= 3
    assert limiter.waited > 0


def test_given_a_full_window_then_a_token_returns_one_window_after_its_request_finished() -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit=2, window=10, clock=clock, wait=clock.wait)

    started = starts(limiter, clock, count=5, duration=1)

    # counted from the end of a request, not its start: 0 and 1 end at 1 and 2, so 11 and 12
    assert started == [0, 1, 11, 12, 22]
    assert busiest_window(started, 10) == 2


def test_given_a_request_in_flight_then_it_holds_its_token_until_one_window_after_it_ends() -> None:
    limiter = RateLimiter(limit=1, window=0.05)  # the real clock: another thread releases
    limiter.acquire()
    began = time.monotonic()
    release_later = threading.Timer(0.03, limiter.release)
    release_later.start()

    limiter.acquire()
    release_later.join()

    assert time.monotonic() - began >= 0.03 + 0.05 - 0.005  # the end, then one window


def test_given_a_hold_then_no_request_starts_before_it_ends() -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit=100, window=60, clock=clock, wait=clock.wait)

    limiter.hold(0.2)
    limiter.acquire()

    assert clock.now == pytest.approx(0.2)
    assert limiter.holds == 1


@pytest.mark.parametrize(
    ("requests", "per", "window", "limit", "span"),
    [
        (100, 60.0, None, 100, 60.0),  # open.cx: 100 a minute, held per minute
        (600, 60.0, 1.0, 10, 1.0),  # the same budget held in every second
        (100, 60.0, 0.5, 1, 0.6),  # a window too short for one request widens to its share
        (50, 1.0, None, 50, 1.0),  # Oxylabs: requests per second
        (2.5, 1.0, None, 2, 1.0),  # a share rounds down: never looser than the budget
        (0.5, 1.0, None, 1, 2.0),  # under one a second: one every two seconds
    ],
)
def test_given_a_budget_then_limit_and_window_never_exceed_it(
    requests: float, per: float, window: float | None, limit: int, span: float
) -> None:
    limiter = RateLimiter.budget(requests, per, window)

    assert (limiter.limit, limiter.window) == (limit, pytest.approx(span))
    assert limiter.limit / limiter.window <= requests / per + 1e-9


def test_given_bad_limits_then_they_are_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        RateLimiter(0, 60)
    with pytest.raises(ValueError, match=r"sources\.acme\.requests_per_second must be > 0"):
        RateLimiter.budget(0, 1.0, setting="sources.acme.requests_per_second")


@pytest.mark.parametrize(
    ("headers", "exhausted"),
    [
        ({"x-ratelimit-requests-remaining": "0"}, True),
        ({"X-RateLimit-Jobs-Remaining": " 0.0 "}, True),
        ({"x-ratelimit-requests-remaining": "3", "x-ratelimit-jobs-remaining": "0"}, True),
        ({"x-ratelimit-requests-remaining": "3"}, False),
        ({"x-ratelimit-requests-limit": "0"}, False),
        ({}, False),
    ],
)
def test_quota_headers_are_read_whatever_the_quota_name_and_case(
    headers: dict[str, str], exhausted: bool
) -> None:
    assert quota_exhausted(CaseInsensitiveDict(headers)) is exhausted


def test_given_a_quota_pause_when_a_remaining_header_hits_0_then_every_start_waits_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit=50, window=1, quota_pause=1.5, clock=clock, wait=clock.wait)

    assert limiter.observe(answer(headers={"x-ratelimit-requests-remaining": "2"}), 300) == 0
    assert limiter.observe(answer(headers={"x-ratelimit-requests-remaining": "0"}), 300) == 1.5
    limiter.acquire()

    assert clock.now == pytest.approx(1.5)


def test_given_no_quota_pause_then_the_quota_headers_are_ignored() -> None:
    limiter = RateLimiter(limit=10, window=1)

    assert limiter.observe(answer(headers={"x-ratelimit-remaining": "0"}), 300) == 0
    assert limiter.holds == 0


@pytest.mark.parametrize(
    ("retry_after", "held"),
    [("2", 2.0), ("0", 0.0), ("3600", 0.0), ("soon", 0.0)],
    ids=["within-the-wait", "zero", "longer-than-the-sync-waits", "unreadable"],
)
def test_given_a_429_then_it_holds_only_for_a_wait_the_sync_will_sit_out(
    retry_after: str, held: float
) -> None:
    limiter = RateLimiter(limit=10, window=1)

    assert limiter.observe(answer(429, {"Retry-After": retry_after}), max_hold=300) == held


def paced_client(
    limiter: RateLimiter, stats: RequestStats
) -> tuple[ProviderRESTClient, requests_mock.Adapter]:
    """A real client whose transport (under the paced one) is an in-process mock."""
    client = build_client(SPEC, BASE_URL, None, stats=stats)
    transport = requests_mock.Adapter()
    client.session.mount("http://", transport)
    install_pacing(client, limiter)
    return client, transport


def test_given_a_paced_client_then_every_attempt_takes_a_token_retries_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "sleep", lambda _: None)  # dlt's backoff, not under test
    clock = FakeClock()
    limiter = RateLimiter(limit=1, window=10, clock=clock, wait=clock.wait)
    stats = RequestStats()
    client, transport = paced_client(limiter, stats)
    started: list[float] = []

    def record(request: object, context: object) -> dict[str, int]:
        started.append(clock.now)
        return {"id": 1}

    transport.register_uri(
        "GET",
        f"{BASE_URL}/items",
        [{"status_code": status, "json": record} for status in (503, 503, 200)],
    )

    assert client.get("/items").json() == {"id": 1}
    assert started == [0, 10, 20]
    assert stats.requests == 3


def test_given_an_exhausted_quota_header_then_the_next_request_waits_the_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit=50, window=1, quota_pause=1.0, clock=clock, wait=clock.wait)
    client, transport = paced_client(limiter, RequestStats())
    started: list[float] = []

    def record(request: object, context: object) -> dict[str, int]:
        started.append(clock.now)
        return {"id": len(started)}

    spent = {"x-ratelimit-requests-limit": "50", "x-ratelimit-requests-remaining": "0"}
    transport.register_uri(
        "GET",
        f"{BASE_URL}/items",
        [{"json": record, "headers": spent}, {"json": record}],
    )

    assert client.get("/items").json() == {"id": 1}
    assert client.get("/items").json() == {"id": 2}
    assert started == [0, 1.0]
    assert limiter.holds == 1


def test_given_a_429_then_the_paced_client_holds_every_thread_and_dlt_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    retry_waits: list[float] = []
    monkeypatch.setattr(time, "sleep", retry_waits.append)
    clock = FakeClock()
    limiter = RateLimiter(limit=50, window=1, clock=clock, wait=clock.wait)
    stats = RequestStats()
    client, transport = paced_client(limiter, stats)
    transport.register_uri(
        "GET",
        f"{BASE_URL}/items",
        [{"status_code": 429, "headers": {"Retry-After": "2"}}, {"json": {"id": 1}}],
    )

    assert client.get("/items").json() == {"id": 1}
    assert retry_waits == [2.0]  # dlt's retry honours Retry-After ...
    assert clock.now == pytest.approx(2.0)  # ... and so does every other start
    assert (stats.requests, stats.throttled) == (2, 1)
