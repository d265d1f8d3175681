"""Reworkd with many groups: full and no-change sync against the sequential latency floor.

    .venv/bin/python -m benchmarks.bench_partitions [--groups 1000] [--groups 10000]
        [--outputs 50] [--latency 0.05]

For each number of groups, in one run: a sandbox whose every answer waits `latency` seconds
(a network round trip), then in child processes (benchmarks/child.py): (1) RAW: every group's
first page fetched by 16 threads with a bare session: what the sandbox and the loopback can
serve, so a slow sync is not blamed on the sandbox; (2) a full `scrapesync` sync into a fresh
DuckDB file; (3) a second sync with no change. Printed: seconds, each sync as a ratio to the
sequential latency floor (groups x latency: what one request per group after the other costs;
target <= 0.2), requests per group on the no-change sync, and the child's peak RSS.

The group ids go to the child in `.dlt/config.toml` of its working directory (10,000 ids do
not fit in one command-line argument).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.child import child_sync
from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.reworkd import DEFAULT_KEY, ReworkdAPI

RAW_WORKERS = 16
RAW_CHILD = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from dlt.sources.helpers.requests import Client
base_url, groups = sys.argv[1], json.load(open(sys.argv[2]))
key, workers = sys.argv[3], int(sys.argv[4])
session = Client(raise_for_status=True).session
headers = {"Authorization": f"Bearer {key}"}
def first_page(group):
    return len(session.get(f"{base_url}/v1/outputs/{group}", params={"limit": 1000},
                           headers=headers).content)
started = time.perf_counter()
with ThreadPoolExecutor(workers) as pool:
    sizes = list(pool.map(first_page, groups))
print(json.dumps({"seconds": time.perf_counter() - started, "bytes": sum(sizes)}))
"""


def raw_fetch(base_url: str, groups_file: Path) -> dict[str, Any]:
    """Every group's first page, `RAW_WORKERS` at a time, in a child process."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RAW_CHILD,
            base_url,
            str(groups_file),
            DEFAULT_KEY,
            str(RAW_WORKERS),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def write_config(workdir: Path, groups: list[str]) -> Path:
    """`.dlt/config.toml` naming the groups (read by the child's dlt), and a JSON copy."""
    config = workdir / ".dlt" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[sources.reworkd]\ngroup_ids = " + json.dumps(groups) + "\n")
    listing = workdir / "groups.json"
    listing.write_text(json.dumps(groups))
    return listing


def measure(groups: int, outputs: int, latency: float) -> dict[str, Any]:
    print(
        f"\n== {groups:,} groups x {outputs} outputs, {latency * 1000:.0f} ms latency", flush=True
    )
    started = time.perf_counter()
    sandbox = Sandbox.start_default(
        {"reworkd": {"groups": groups, "records_per_group": outputs, "cloned": True}}
    )
    api = sandbox.providers["reworkd"]
    assert isinstance(api, ReworkdAPI)
    print(f"sandbox built in {time.perf_counter() - started:.1f} s", flush=True)
    api.latency = latency
    floor = groups * latency
    try:
        base_url = sandbox.url("reworkd")
        options = {"base_url": base_url, "api_key": DEFAULT_KEY}
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            listing = write_config(workdir, list(api.groups))
            raw = raw_fetch(base_url, listing)
            sandbox.requests.clear()
            full = child_sync("reworkd", options, workdir)
            sandbox.requests.clear()
            again = child_sync("reworkd", options, workdir)
            no_change_requests = len(sandbox.requests.entries("reworkd"))
    finally:
        sandbox.stop()
    assert full["rows"]["outputs"] == groups * outputs, full
    result = {
        "groups": groups,
        "outputs_per_group": outputs,
        "latency_s": latency,
        "floor_s": floor,
        "raw_concurrent_s": raw["seconds"],
        "raw_ideal_s": floor / RAW_WORKERS,
        "full_s": full["seconds"],
        "full_ratio": full["seconds"] / floor,
        "full_requests": full["requests"],
        "full_peak_rss_mib": full["peak_rss_mib"],
        "no_change_s": again["seconds"],
        "no_change_ratio": again["seconds"] / floor,
        "no_change_requests_per_group": no_change_requests / groups,
        "no_change_peak_rss_mib": again["peak_rss_mib"],
    }
    print(
        f"sandbox alone ({RAW_WORKERS} threads, 1 page per group): {raw['seconds']:.1f} s "
        f"(ideal {floor / RAW_WORKERS:.1f} s)\n"
        f"sequential latency floor {floor:.0f} s | full sync {full['seconds']:.1f} s = "
        f"{result['full_ratio']:.3f} of the floor, {full['requests']} requests, peak RSS "
        f"{full['peak_rss_mib']:.0f} MiB | no-change sync {again['seconds']:.1f} s = "
        f"{result['no_change_ratio']:.3f} of the floor, "
        f"{result['no_change_requests_per_group']:.2f} request(s) per group, peak RSS "
        f"{again['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, action="append", help="default 1000 and 10000")
    parser.add_argument("--outputs", type=int, default=50, help="outputs per group")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    args = parser.parse_args()
    results = [
        measure(groups, args.outputs, args.latency) for groups in args.groups or [1000, 10_000]
    ]
    print("\n" + json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
