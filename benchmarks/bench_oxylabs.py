"""Collecting done Oxylabs jobs at 50 ms latency: bounded concurrency vs sequential.

    .venv/bin/python -m benchmarks.bench_oxylabs [--jobs 5000] [--sequential-jobs 1000]
        [--latency 0.05] [--concurrency 16] [--rps 400] [--sandbox-limit 500]

Both variants run a complete `scrapesync` sync (poll + download + load into a fresh DuckDB
file) of jobs that are all `done`, against the sandbox answering every request after
`--latency` seconds and answering 429 above `--sandbox-limit` requests per second. The
concurrent sync is capped at `--rps` requests per second by its own rate limiter. Sequential
(`concurrency=1`) collection of 5,000 jobs at 50 ms takes ~5 minutes, so by default it is
measured on `--sequential-jobs` jobs and compared per job (printed as such); pass
`--sequential-jobs 5000` to measure it in full.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from scrapesync.sandbox import Sandbox
from scrapesync.sources.oxylabs import connect

ROOT = Path(__file__).resolve().parent.parent


CHILD = """
import json, sys, time
import dlt
from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import sync
options, workdir = json.loads(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
report = sync(registry.get("oxylabs"), destination=dlt.destinations.duckdb(workdir + "/b.duckdb"),
              source_options=options, pipelines_dir=workdir + "/pipelines")
assert report.ok, report.error
rows = {t.table: t.total for t in report.tables}
print(json.dumps({"seconds": time.perf_counter() - started, "results": rows.get("results", 0)}))
"""


def collect_once(
    jobs: int, concurrency: int, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """Submit `jobs`, let them finish, then time one sync in a child process.

    The sync runs in its own process (as it would against the real, remote API), so the
    sandbox serving it does not compete for the same interpreter lock.
    """
    work.mkdir(parents=True)
    sandbox_options = {
        "schedules": 0,
        "latency": args.latency,
        "rate_limit": args.sandbox_limit,
        "html_bytes": 4000,
        "workdir": str(work),
    }
    with Sandbox.start_default({"oxylabs": sandbox_options}) as sandbox:
        api = sandbox.providers["oxylabs"]
        options = {
            **api.source_options(sandbox.url("oxylabs")),
            "concurrency": concurrency,
            "requests_per_second": args.rps,
        }
        connect(**options).submitter.submit(
            [f"bench {n}" for n in range(jobs)], "query", {"source": "universal"}
        )
        api.advance()
        sandbox.requests.clear()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps({**options, "scheduler": False}), str(work)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        child = json.loads(done.stdout.strip().splitlines()[-1])
        log = sandbox.requests.entries("oxylabs")
    per_second = Counter(int(entry.at) for entry in log)
    return {
        "jobs": jobs,
        "seconds": child["seconds"],
        "per_job_ms": 1000 * child["seconds"] / jobs,
        "requests": len(log),
        "throttled": sum(1 for entry in log if entry.status == 429),
        "peak_rps": max(per_second.values()) if per_second else 0,
        "results": child["results"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--sequential-jobs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rps", type=float, default=400.0)
    parser.add_argument("--sandbox-limit", type=float, default=500.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        concurrent = collect_once(args.jobs, args.concurrency, args, Path(tmp) / "c")
        sequential = collect_once(args.sequential_jobs, 1, args, Path(tmp) / "s")
    for name, result in (
        ("sequential", sequential),
        (f"concurrency={args.concurrency}", concurrent),
    ):
        print(
            f"{name:<16} {result['jobs']:>6} jobs  {result['seconds']:7.1f} s  "
            f"{result['per_job_ms']:6.1f} ms/job  {result['requests']:>6} requests  "
            f"peak {result['peak_rps']:>4} req/s  {result['throttled']} x 429  "
            f"{result['results']} result rows"
        )
    ratio = sequential["per_job_ms"] / concurrent["per_job_ms"]
    basis = "" if args.sequential_jobs == args.jobs else " (per job; sequential measured on "
    basis += f"{args.sequential_jobs} jobs)" if basis else ""
    print(
        f"speed-up of bounded concurrency over sequential: {ratio:.1f}x{basis} "
        f"(target >= 8x), rate cap {args.rps:.0f} req/s, sandbox limit {args.sandbox_limit:.0f}"
    )


if __name__ == "__main__":
    main()
