"""Reworkd full and no-change sync through the sandbox, measured against a raw fetch.

    .venv/bin/python -m benchmarks.bench_reworkd [--rows 200000] [--rows 1000000]

For each size (default 200k and 1M outputs in one group), in one run: (1) RAW: fetch and
JSON-decode every page with dlt's retrying session (the floor: what any connector must do),
once before and once after the sync, averaged (the machine's load moves); (2) a full
`scrapesync` sync in a child process into a fresh DuckDB file named the documented way
(`DESTINATION__DUCKDB__CREDENTIALS`, benchmarks/child.py): wall time, CPU time and the child's
peak RSS; (3) a second sync with no change (requests made). Prints the ratio sync / RAW, rows/s
and peak RSS. Targets (issue 14): ratio <= 2.0 at 200k, peak RSS <= 400 MiB at 200k and 1M.
The sandbox runs in this process, so its memory is not counted in the sync's RSS.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from dlt.sources.helpers.requests import Client

from benchmarks.child import child_sync, print_rss_growth
from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.reworkd import DEFAULT_KEY

GROUP = "bench-group"


def raw_fetch(base_url: str) -> tuple[float, int]:
    """Fetch + decode every page as a bare client would; returns (seconds, items)."""
    session = Client(raise_for_status=True).session
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    url = f"{base_url}/v1/outputs/{GROUP}"
    started, items, cursor = time.perf_counter(), 0, None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor is not None:
            params["cursor"] = cursor
        page = orjson.loads(session.get(url, params=params, headers=headers).content)
        items += len(page["items"])
        cursor = page["metadata"]["next_cursor"]
        if not page["items"] or cursor is None:
            return time.perf_counter() - started, items


def measure(rows: int) -> dict[str, Any]:
    print(f"\n== {rows:,} outputs: building the sandbox ...", flush=True)
    sandbox = Sandbox.start_default({"reworkd": {"groups": [GROUP], "records_per_group": rows}})
    try:
        base_url = sandbox.url("reworkd")
        raw_before, raw_items = raw_fetch(base_url)
        options = {"base_url": base_url, "api_key": DEFAULT_KEY, "group_ids": [GROUP]}
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            full = child_sync("reworkd", options, workdir)
            raw_after, _ = raw_fetch(base_url)
            sandbox.requests.clear()
            again = child_sync("reworkd", options, workdir)
            no_change_requests = len(sandbox.requests.entries("reworkd"))
    finally:
        sandbox.stop()
    assert full["rows"]["outputs"] == raw_items == rows, (full, raw_items)
    raw_seconds = (raw_before + raw_after) / 2
    result = {
        "rows": rows,
        "raw_s": raw_seconds,
        "raw_before_after_s": [raw_before, raw_after],
        "sync_s": full["seconds"],
        "sync_cpu_s": full["cpu_s"],
        "ratio": full["seconds"] / raw_seconds,
        "rows_per_s": rows / full["seconds"],
        "peak_rss_mib": full["peak_rss_mib"],
        "no_change_requests": no_change_requests,
        "no_change_s": again["seconds"],
    }
    print(
        f"RAW fetch+decode {raw_seconds:.1f} s ({raw_before:.1f} before, {raw_after:.1f} after) | "
        f"scrapesync full sync {full['seconds']:.1f} s = {result['ratio']:.2f}x RAW "
        f"(target <= 2.0 at 200k), CPU {full['cpu_s']:.1f} s, {result['rows_per_s']:,.0f} rows/s, "
        f"peak RSS {full['peak_rss_mib'] or 0:.0f} MiB (target <= 400) | no-change sync: "
        f"{no_change_requests} request(s), {again['seconds']:.1f} s",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, action="append", help="sizes (default 200k, 1M)")
    args = parser.parse_args()
    results = [measure(rows) for rows in args.rows or [200_000, 1_000_000]]
    print_rss_growth(results, "rows")
    print("\n" + json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
