"""Run one `scrapesync` sync in a child process and measure it: wall time and peak RSS.

The child is a separate interpreter so the sandbox (in the parent) neither shares its CPU
interpreter lock nor counts in its memory. RSS is sampled from the parent every 20 ms:
`ru_maxrss` cannot be used, because Linux carries the parent's RSS over fork+exec into the
child's maximum, and the parent holds the whole sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

CHILD = """
import json, sys, time
from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import sync
provider, options = sys.argv[1], json.loads(sys.argv[2])
started = time.perf_counter()
report = sync(registry.get(provider), source_options=options)
assert report.ok, report.error
print(json.dumps({"seconds": time.perf_counter() - started, "requests": report.stats.requests,
                  "rows": {t.table: t.total for t in report.tables}}))
"""


def child_sync(provider: str, options: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One sync of `provider` into `workdir`: seconds, requests, rows per table, peak RSS MiB."""
    env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, provider, json.dumps(options)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    watched = psutil.Process(child.pid)
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(0.02)
    stdout, stderr = child.communicate()
    if child.returncode:
        raise SystemExit(f"{provider} sync failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = peak / 2**20
    return result


def print_rss_growth(results: list[dict[str, Any]], size_key: str) -> None:
    """Peak RSS of the largest run relative to the smallest (flat memory: close to 1)."""
    small, large = results[0], results[-1]
    if len(results) > 1 and small["peak_rss_mib"] and large["peak_rss_mib"]:
        growth = large["peak_rss_mib"] / small["peak_rss_mib"]
        print(f"\npeak RSS {small[size_key]:,.0f} -> {large[size_key]:,.0f}: x{growth:.2f}")
