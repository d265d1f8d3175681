"""Client-side rate limiting: one limiter for every provider that has a request budget.

`RateLimiter` keeps at most `limit` requests in any rolling `window` seconds. A spent token
comes back exactly `window` seconds after the request that spent it *finished*: that keeps at
most `limit` requests in every rolling window, whatever window the server counts in (fixed or
sliding). A plain bucket that starts full and refills continuously would allow up to twice
`limit` in a rolling window and trip a sliding-window limiter; timing from the end of a
request (the latest moment the server can have counted it) makes the guarantee hold without a
safety margin for network delay. `RateLimiter.budget` turns a budget stated per minute or per
second into `limit` and `window`.

The provider's own answers hold every thread, so parallel requests do not keep knocking while
one waits:
* a 429 with `Retry-After` holds new requests until then, if the sync is willing to wait that
  long (a longer wait fails fast in `scrapesync.sources.common.client`: no hold then);
* with `quota_pause` set, an `x-ratelimit-<name>-remaining` header of 0 (a provider that
  publishes its quota without a reset time) holds new requests for `quota_pause` seconds.

`install_pacing` wraps the transport adapter of a client's session (a public extension point
of requests), so every attempt is paced, retries included, and dlt's retry layer is untouched.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from dlt.common import logger
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter

from scrapesync.sources.common.client import ProviderRESTClient, retry_after_seconds

Clock = Callable[[], float]
Wait = Callable[[float], object]


class RateLimiter:
    """At most `limit` requests in any `window` seconds, and holds on the provider's word.

    Thread-safe. `clock` and `wait` are injectable for tests: `wait(seconds)` is called with the
    limiter's lock held and must let `clock` move on (by default it waits on the lock's
    condition, so a finished request wakes the waiting ones early).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        quota_pause: float | None = None,
        clock: Clock = time.monotonic,
        wait: Wait | None = None,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"rate limit needs limit >= 1 and window > 0, got {limit}/{window}")
        self.limit = limit
        self.window = window
        self.quota_pause = quota_pause
        self._clock = clock
        self._cond = threading.Condition()
        self._wait: Wait = wait or (lambda seconds: self._cond.wait(timeout=seconds))
        self._finished: deque[float] = deque()
        self._in_flight = 0
        self._hold_until = 0.0
        self.waited = 0.0
        self.holds = 0

    @classmethod
    def budget(
        cls,
        requests: float,
        per: float,
        window: float | None = None,
        *,
        setting: str = "the request budget",
        quota_pause: float | None = None,
        clock: Clock = time.monotonic,
        wait: Wait | None = None,
    ) -> RateLimiter:
        """`requests` per `per` seconds, held in every rolling `window` (default: `per`).

        A window holds its share of the budget rounded down, so it is never looser than the
        budget; a window too short for one request is widened to one request's share.
        `setting` names the configuration key in the error for a budget that is not > 0.
        """
        if requests <= 0 or per <= 0:
            raise ValueError(f"{setting} must be > 0, got {requests} per {per} s")
        span = per if window is None else window
        share = requests * span / per
        if share < 1:
            span, share = per / requests, 1
        return cls(int(share), span, quota_pause=quota_pause, clock=clock, wait=wait)

    def acquire(self) -> None:
        """Block until a request may start, then count it as in flight."""
        with self._cond:
            while True:
                delay = self._delay(self._clock())
                if delay <= 0:
                    self._in_flight += 1
                    return
                self.waited += delay
                self._wait(delay)

    def release(self) -> None:
        """The request finished: its token returns one window from now."""
        with self._cond:
            self._in_flight -= 1
            self._finished.append(self._clock())
            self._cond.notify_all()

    def hold(self, seconds: float) -> None:
        """No request starts for `seconds` (the provider said so)."""
        with self._cond:
            self._hold_until = max(self._hold_until, self._clock() + seconds)
            self.holds += 1

    def observe(self, response: Response, max_hold: float) -> float:
        """Hold as `response` asks (see the module doc); the seconds held, 0 for none."""
        seconds = 0.0
        if response.status_code == 429:
            wait = retry_after_seconds(response)
            if wait and 0 < wait <= max_hold:
                seconds = wait
        if self.quota_pause and quota_exhausted(response.headers):
            seconds = max(seconds, self.quota_pause)
        if seconds > 0:
            self.hold(seconds)
        return seconds

    def _delay(self, now: float) -> float:
        while self._finished and self._finished[0] <= now - self.window:
            self._finished.popleft()
        if now < self._hold_until:
            return self._hold_until - now
        if len(self._finished) + self._in_flight < self.limit:
            return 0.0
        if not self._finished:  # every token is held by a request still in flight
            return self.window
        return self._finished[0] + self.window - now


def quota_exhausted(headers: Mapping[str, str]) -> bool:
    """Whether any `x-ratelimit-<name>-remaining` header says 0 (several quotas may be sent)."""
    for name, value in headers.items():
        lowered = name.lower()
        quota = lowered.startswith("x-ratelimit-") and lowered.endswith("-remaining")
        if quota and value.strip() in ("0", "0.0"):
            return True
    return False


class PacedAdapter(BaseAdapter):
    """A transport adapter that takes a token before every send and listens to the answer."""

    def __init__(
        self, limiter: RateLimiter, inner: BaseAdapter, provider: str, max_hold: float
    ) -> None:
        super().__init__()
        self.limiter = limiter
        self.inner = inner
        self.provider = provider
        self.max_hold = max_hold

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.limiter.acquire()
        try:
            response = self.inner.send(request, *args, **kwargs)
        finally:
            self.limiter.release()
        if response.status_code == 429:
            wait = retry_after_seconds(response)
            logger.warning(f"{self.provider}: rate limited (429), Retry-After {wait}")
        self.limiter.observe(response, self.max_hold)
        return response

    def close(self) -> None:
        self.inner.close()


def install_pacing(client: ProviderRESTClient, limiter: RateLimiter) -> None:
    """Route every attempt of `client` through `limiter` (http and https).

    The adapter dlt's session mounted stays underneath (its connection pool included); a 429
    holds the limiter only for waits the client will sit out (`max_retry_delay`).
    """
    session = client.session
    for prefix in ("https://", "http://"):
        inner = session.get_adapter(prefix)
        paced = PacedAdapter(limiter, inner, client.spec.name, client.max_retry_delay)
        session.mount(prefix, paced)
