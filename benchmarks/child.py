"""Run one `scrapesync` sync in a child process and measure it: wall time and peak RSS.

The child is a separate interpreter so the sandbox (in the parent) neither shares its CPU
interpreter lock nor counts in its memory. Memory is read from the parent every 20 ms: the
child's own high-water mark (`VmHWM` in /proc/<pid>/status, so a peak between two samples
still counts) plus the resident memory of its children at that moment (dlt's normalize
workers, when there are several). `ru_maxrss` cannot be used, because Linux carries the
parent's RSS over fork+exec into the child's maximum, and the parent holds the whole sandbox.

The child loads into `<workdir>/scrapesync.duckdb` named the documented way
(`DESTINATION__DUCKDB__CREDENTIALS`), as a deployment would configure it, unless
`configured_file=False` (then the same file is found as the default `./scrapesync.duckdb`).
`profile` writes a cProfile profile of the child's sync to a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

CHILD = """
import json, os, sys, time
from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import sync
provider, options = sys.argv[1], json.loads(sys.argv[2])
profile = os.environ.get("SCRAPESYNC_BENCH_PROFILE")
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
started = time.perf_counter()
report = sync(registry.get(provider), source_options=options)
seconds = time.perf_counter() - started
if profile:
    profiler.disable()
    profiler.dump_stats(profile)
assert report.ok, report.error
print(json.dumps({"seconds": seconds, "requests": report.stats.requests,
                  "rows": {t.table: t.total for t in report.tables}}))
"""


def child_sync(
    provider: str,
    options: dict[str, Any],
    workdir: Path,
    *,
    configured_file: bool = True,
    env: dict[str, str] | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One sync of `provider` into `workdir`: seconds (the sync, in the child), requests, rows
    per table, peak RSS MiB and CPU seconds of the whole child (on a shared machine CPU time
    moves less than wall time).

    Args:
        configured_file: name the DuckDB file with `DESTINATION__DUCKDB__CREDENTIALS`.
        env: extra environment variables of the child (dlt settings to compare).
        profile: write a cProfile profile of the child's sync there (read it with `pstats`).
    """
    child_env = {**os.environ, "DLT_DATA_DIR": str(workdir / "dlt"), **(env or {})}
    if configured_file:
        child_env["DESTINATION__DUCKDB__CREDENTIALS"] = str(workdir / "scrapesync.duckdb")
    if profile is not None:
        child_env["SCRAPESYNC_BENCH_PROFILE"] = str(profile)
    # output goes to files: a child blocked on a full pipe would never finish
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, provider, json.dumps(options)],
            cwd=workdir,
            env=child_env,
            stdout=out,
            stderr=err,
            text=True,
        )
        peak, cpu = 0, 0.0
        while True:
            peak = max(peak, _resident(child.pid))
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:  # reaped here for its CPU time (its ru_maxrss is wrong, see above)
                child.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime
                break
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode:
        raise SystemExit(f"{provider} sync failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = peak / 2**20
    result["cpu_s"] = cpu  # user + system of the child and its waited-for children
    return result


def _resident(pid: int) -> int:
    """Bytes: the process's high-water mark plus its children's resident memory now."""
    total = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total = int(line.split()[1]) * 1024
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    return total


def print_rss_growth(results: list[dict[str, Any]], size_key: str) -> None:
    """Peak RSS of the largest run relative to the smallest (flat memory: close to 1)."""
    small, large = results[0], results[-1]
    if len(results) > 1 and small["peak_rss_mib"] and large["peak_rss_mib"]:
        growth = large["peak_rss_mib"] / small["peak_rss_mib"]
        print(f"\npeak RSS {small[size_key]:,.0f} -> {large[size_key]:,.0f}: x{growth:.2f}")
