"""Counters of the HTTP work of one provider sync: requests, retries, 429s and bytes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from requests import Response

from scrapesync.sources.common.errors import RETRY_STATUS, is_streamed


@dataclass
class RequestStats:
    """Counters of the HTTP work of one provider sync (thread-safe)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, response: Response) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += _body_size(response)
            if response.status_code == 429:
                self.throttled += 1
            if response.status_code == 429 or response.status_code in RETRY_STATUS:
                self.retries += 1


def _body_size(response: Response) -> int:
    """Bytes of the body: response hooks run before requests reads it, so the declared
    `Content-Length` is used until it has been read (a chunked body without one counts 0)."""
    if not is_streamed(response):
        return len(response.content or b"")
    try:
        return int(response.headers.get("Content-Length") or 0)
    except ValueError:
        return 0
