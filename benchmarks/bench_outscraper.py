"""Outscraper: a sync whose task has one large CSV result file; peak RSS of the whole sync.

    .venv/bin/python -m benchmarks.bench_outscraper [--rows 1000000] [--mb 50] [--mb 500]

For each size (default: a 1M-row file), in one run: (1) RAW: download the file streaming with
dlt's retrying session and count its lines (the floor); (2) a full `scrapesync sync outscraper`
in a child process into a fresh DuckDB file named the documented way
(`DESTINATION__DUCKDB__CREDENTIALS`, benchmarks/child.py): wall time, rows loaded and the
child's peak RSS (the sandbox that serves the file runs in this process, so its memory is not
counted). Target (issue 14): peak RSS flat and under 400 MiB whatever the file size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from dlt.sources.helpers.requests import Client

from benchmarks.child import child_sync, print_rss_growth
from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.outscraper import DEFAULT_KEY, OutscraperAPI
from scrapesync.sandbox.outscraper_data import csv_chunks, place_row


def raw_download(url: str) -> tuple[float, int, int]:
    """Stream the file as a bare client would; returns (seconds, bytes, lines)."""
    session = Client(raise_for_status=True).session
    started, size, lines = time.perf_counter(), 0, 0
    with session.get(url, stream=True) as response:
        for chunk in response.iter_content(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return time.perf_counter() - started, size, lines


def megabytes_for(rows: int) -> float:
    """The `large_csv_mb` whose file has `rows` rows (the sandbox writes blocks of 1,000)."""
    sample = [place_row("202501010000000001", "restaurants ny usa", i) for i in range(1000)]
    block = b"".join(csv_chunks(sample, header=False))
    return (rows // 1000 - 0.5) * len(block) / 1e6


def measure(megabytes: float) -> dict[str, Any]:
    print(f"\n== {megabytes:g} MB CSV result file: building the sandbox ...", flush=True)
    options = {"tasks": 0, "requests": 0, "large_csv_mb": megabytes}
    sandbox = Sandbox.start_default({"outscraper": options})
    try:
        api = sandbox.providers["outscraper"]
        assert isinstance(api, OutscraperAPI)
        (task,) = api.tasks.values()
        url = f"{sandbox.url('outscraper')}/files/{task.id}/{task.version}"
        raw_s, size, lines = raw_download(f"{url}?sig={task.queue_task_id[:8]}")
        source = {"base_url": sandbox.url("outscraper"), "api_key": DEFAULT_KEY}
        with tempfile.TemporaryDirectory() as tmp:
            sync = child_sync("outscraper", {**source, "use_webhooks": False}, Path(tmp))
    finally:
        sandbox.stop()
    assert sync["rows"]["task_results"] == task.rows == lines - 1, (sync, task.rows, lines)
    result = {
        "file_mb": size / 1e6,
        "rows": task.rows,
        "raw_s": raw_s,
        "sync_s": sync["seconds"],
        "sync_cpu_s": sync["cpu_s"],
        "ratio": sync["seconds"] / raw_s,
        "rows_per_s": task.rows / sync["seconds"],
        "peak_rss_mib": sync["peak_rss_mib"],
    }
    print(
        f"file {size / 1e6:.0f} MB, {task.rows:,} rows | RAW download {raw_s:.1f} s | "
        f"scrapesync sync {sync['seconds']:.1f} s = {result['ratio']:.1f}x RAW, "
        f"{result['rows_per_s']:,.0f} rows/s, peak RSS {sync['peak_rss_mib'] or 0:.0f} MiB "
        "(target <= 400)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, action="append", help="rows of a file (default 1M)")
    parser.add_argument("--mb", type=float, action="append", help="file sizes in MB")
    args = parser.parse_args()
    sizes = [megabytes_for(rows) for rows in args.rows or []] + (args.mb or [])
    results = [measure(size) for size in sizes or [megabytes_for(1_000_000)]]
    print_rss_growth(results, "file_mb")  # target: flat, < 400 MiB
    print("\n" + json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
