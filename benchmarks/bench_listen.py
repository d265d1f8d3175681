"""Load on `scrapesync listen`: many signed deliveries from concurrent senders, on 127.0.0.1.

    .venv/bin/python -m benchmarks.bench_listen [--deliveries 2000] [--clients 50]
        [--store-dir DIR]

Starts `scrapesync listen` as its own process (the real command, port chosen by the system)
with an Outscraper signing key, then `--clients` threads send `--deliveries` signed Outscraper
webhooks between them, each on a new connection as a webhook sender does, without retries.
Prints the answers by status, the connection errors (resets, refusals, timeouts), whether every
delivery answered 200 is in the store exactly once, and the p50 / p99 / max latency (connect to
answer). Every loop is bounded (each delivery is tried once, with a 120 s timeout) and the
listener is stopped at the end. It runs in a temporary directory, so the notification store
(the default destination, `./scrapesync.duckdb`, see sources/common/inbox.py) and its spool
(`--store-dir`, default in that directory) are the run's own. Each accepted notification is
committed before the 200, so the store's commit time is part of the latency.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import psutil

from scrapesync.sources.common.inbox import NotificationStore
from scrapesync.sources.outscraper.webhooks import signature

KEY = "bench-listen-signing-key-0123456789"
HOST = "127.0.0.1"


def start_listener(store_dir: Path, log: Path) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "SOURCES__OUTSCRAPER__API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    command = "from scrapesync.pipelines.cli import main; raise SystemExit(main())"
    args = ["listen", "--host", HOST, "--port", "0", "--dir", str(store_dir)]
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", command, *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    assert child.stdout is not None
    first = child.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
    if not found:
        child.kill()
        raise SystemExit(f"listen did not start: {first!r} (see {log})")
    return child, int(found.group(1))


class Load:
    """The deliveries, shared by the sender threads through one counter."""

    def __init__(self, port: int, deliveries: int) -> None:
        self.port = port
        self.deliveries = deliveries
        self.next = 0
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.accepted: list[str] = []

    def take(self) -> int | None:
        with self.lock:
            if self.next >= self.deliveries:
                return None
            self.next += 1
            return self.next - 1

    def sender(self) -> None:
        while (number := self.take()) is not None:
            object_id = f"bench-{number:06d}"
            body = orjson.dumps({"id": object_id, "status": "SUCCESS", "api_task": True})
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature(body, KEY),
            }
            started = time.perf_counter()
            outcome = self.deliver(body, headers)
            elapsed = time.perf_counter() - started
            with self.lock:
                self.statuses[outcome] += 1
                self.latencies.append(elapsed)
                if outcome == "200":
                    self.accepted.append(object_id)

    def deliver(self, body: bytes, headers: dict[str, str]) -> str:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
        try:
            conn.request("POST", "/outscraper/bench", body, headers)
            answer = conn.getresponse()
            answer.read()
            return str(answer.status)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            return "reset"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        finally:
            conn.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--store-dir", default=None, help="notification store (default: temp)")
    args = parser.parse_args()

    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="bench-listen-") as work:
        # the listener and the store reader below use the destination in the working directory
        os.chdir(work)
        store_dir = Path(args.store_dir or Path(work) / "store")
        child, port = start_listener(store_dir, Path(work) / "listen.log")
        try:
            rss_before = psutil.Process(child.pid).memory_info().rss
            load = Load(port, args.deliveries)
            senders = [threading.Thread(target=load.sender) for _ in range(args.clients)]
            started = time.perf_counter()
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join()
            seconds = time.perf_counter() - started
            rss_after = psutil.Process(child.pid).memory_info().rss
        finally:
            child.terminate()
            child.wait(timeout=60)
        stored = [n.object_id for n in NotificationStore(store_dir).pending("outscraper")]
        log_text = (Path(work) / "listen.log").read_text()
        os.chdir(home)

    once = Counter(stored)
    exactly_once = sorted(stored) == sorted(load.accepted) and all(c == 1 for c in once.values())
    ms = [value * 1000 for value in load.latencies]
    print(f"{args.deliveries} signed deliveries from {args.clients} concurrent clients")
    print(f"answers: {dict(sorted(load.statuses.items()))}")
    print(f"resets: {load.statuses['reset']}, refused: {load.statuses['refused']}, "
          f"timeouts: {load.statuses['timeout']}")  # fmt: skip
    print(f"answered 200: {len(load.accepted)}; stored: {len(stored)}; "
          f"every 200 stored exactly once: {exactly_once}")  # fmt: skip
    print(f"latency ms: p50 {statistics.median(ms):.1f}, p99 {percentile(ms, 0.99):.1f}, "
          f"max {max(ms):.1f}")  # fmt: skip
    print(f"throughput: {args.deliveries / seconds:.0f} deliveries/s over {seconds:.1f} s")
    print(f"listener RSS: {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after")
    print(f"tracebacks in the listener's log: {log_text.count('Traceback')}")
    ok = exactly_once and load.statuses["200"] == args.deliveries
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
