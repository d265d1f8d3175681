"""Concurrency helpers: overlap the network wait of page N+1 with the work on page N."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

_DONE = object()


def prefetch(pages: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Read `pages` in a background thread, up to `depth` pages ahead of the consumer.

    Cursor pagination cannot fetch pages in parallel, but it can fetch page N+1 while page N
    is transformed and written: the network wait overlaps the CPU work. Exceptions of the
    reader are raised in the consumer; closing the consumer stops the reader.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for page in pages:
                if not offer(page):
                    return
            offer(_DONE)
        except BaseException as exc:
            offer(exc)

    reader = threading.Thread(target=read, name="scrapesync-prefetch", daemon=True)
    reader.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)
