"""Client-side pacing: stay under open.cx's 100 requests/minute instead of bouncing off it.

The limiter is a token bucket of `limit` tokens whose spent tokens come back exactly `window`
seconds after the request that spent them *finished*. That keeps at most `limit` requests in
any rolling window, whatever window the server counts in (fixed or sliding): a plain bucket
that starts full and refills continuously would allow up to twice `limit` in a rolling window
and trip a sliding-window limiter. Timing from the end of a request (the latest moment the
server can have counted it) makes the guarantee hold without a safety margin for network delay.

It sits in a `requests` transport adapter, so every attempt is paced, retries included; the
shared retry layer (sources.common) is untouched. A 429 with `Retry-After` also holds every
thread until then, so parallel requests do not keep knocking while one thread waits.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from dlt.common import logger
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from scrapesync.sources.common.client import ProviderRESTClient, retry_after_seconds


class RollingWindowLimiter:
    """At most `limit` requests in any `window` seconds (thread-safe)."""

    def __init__(self, limit: int, window: float, clock: Any = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"rate limit needs limit >= 1 and window > 0, got {limit}/{window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._finished: deque[float] = deque()
        self._in_flight = 0
        self._hold_until = 0.0
        self._cond = threading.Condition()
        self.waited = 0.0

    def acquire(self) -> None:
        """Block until a request may start, then count it as in flight."""
        with self._cond:
            while True:
                delay = self._delay(self._clock())
                if delay <= 0:
                    self._in_flight += 1
                    return
                self.waited += delay
                self._cond.wait(timeout=delay)

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

    def release(self) -> None:
        """The request finished: its token returns one window from now."""
        with self._cond:
            self._in_flight -= 1
            self._finished.append(self._clock())
            self._cond.notify_all()

    def hold(self, seconds: float) -> None:
        """No request starts for `seconds` (the provider said so with a 429)."""
        with self._cond:
            self._hold_until = max(self._hold_until, self._clock() + seconds)


class PacedAdapter(HTTPAdapter):
    """An `HTTPAdapter` whose every send first takes a token from the limiter."""

    def __init__(self, limiter: RollingWindowLimiter, max_hold: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limiter = limiter
        self.max_hold = max_hold

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.limiter.acquire()
        try:
            response = super().send(request, *args, **kwargs)
        finally:
            self.limiter.release()
        if response.status_code == 429:
            wait = retry_after_seconds(response)
            logger.warning(f"opencx: rate limited (429), Retry-After {wait}")
            # a longer wait than the sync accepts fails fast in sources.common: no hold then
            if wait and 0 < wait <= self.max_hold:
                self.limiter.hold(wait)
        return response


def install_pacing(client: ProviderRESTClient, limiter: RollingWindowLimiter) -> None:
    """Route every request of `client` through the limiter (http and https)."""
    adapter = PacedAdapter(limiter, client.max_retry_delay)
    client.session.mount("https://", adapter)
    client.session.mount("http://", adapter)
