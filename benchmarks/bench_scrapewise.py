"""Scrapewise failed-link fetch: bounded concurrency against the sequential loop.

    .venv/bin/python -m benchmarks.bench_scrapewise [--runs 1000] [--latency 0.05]
        [--concurrency 16] [--concurrency 32]

The sandbox holds `--runs` terminal runs, each with failed links, and answers every request
after `--latency` seconds (the sandbox's `latency` option, slept outside its lock so requests
overlap as on a network). For each concurrency (1 = the plain sequential loop) a fresh dlt
pipeline extracts `jobs` + `job_errors` (the run history, then one errors request per run)
through the real source and client. Prints wall time, requests, links and the speed-up over
sequential; the issue's target is >= 8x at 1,000 runs and 50 ms.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import dlt

from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.scrapewise import DEFAULT_KEY
from scrapesync.sources.scrapewise import scrapewise_source

SCRAPERS = 10


def build_sandbox(runs: int, latency: float) -> Sandbox:
    per_scraper = -(-runs // SCRAPERS)
    options = {
        "groups": 1,
        "scrapers_per_group": SCRAPERS,
        "runs_per_scraper": per_scraper,
        "rate_limit": None,
        "latency": latency,
    }
    sandbox = Sandbox.start_default({"scrapewise": options})
    data = sandbox.providers["scrapewise"].data  # type: ignore[attr-defined]
    for run in data.terminal_runs():
        if run.error_links == 0:
            data.add_errors(run, 1)  # every new run has failed links
    return sandbox


def extract_errors(base_url: str, concurrency: int, workdir: Path) -> dict[str, Any]:
    """One fresh extract of jobs + job_errors; returns seconds, requests and links."""
    source = scrapewise_source(
        api_key=DEFAULT_KEY, base_url=base_url, page_size=1000, concurrency=concurrency
    ).with_resources("jobs", "job_errors")
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_scrapewise_{concurrency}",
        pipelines_dir=str(workdir / f"c{concurrency}"),
        destination="duckdb",
        dataset_name="scrapewise_bench",
    )
    started = time.perf_counter()
    info = pipeline.extract(source)
    seconds = time.perf_counter() - started
    metrics = info.metrics[info.loads_ids[0]][0]["table_metrics"]
    return {"seconds": seconds, "links": metrics["job_errors"].items_count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, action="append", help="default 16")
    args = parser.parse_args()
    sandbox = build_sandbox(args.runs, args.latency)
    results: list[dict[str, Any]] = []
    try:
        base_url = sandbox.url("scrapewise")
        terminal = len(sandbox.providers["scrapewise"].data.terminal_runs())  # type: ignore[attr-defined]
        print(f"{terminal} terminal runs with failed links, {args.latency * 1000:.0f} ms latency")
        with tempfile.TemporaryDirectory() as tmp:
            for workers in [1, *(args.concurrency or [16])]:
                sandbox.requests.clear()
                result = extract_errors(base_url, workers, Path(tmp))
                result["concurrency"] = workers
                result["requests"] = len(sandbox.requests.entries("scrapewise"))
                results.append(result)
                print(
                    f"concurrency {workers:>3}: {result['seconds']:6.2f} s, "
                    f"{result['requests']} requests, {result['links']} links",
                    flush=True,
                )
    finally:
        sandbox.stop()
    sequential = results[0]["seconds"]
    for result in results[1:]:
        result["speedup"] = sequential / result["seconds"]
        verdict = "meets" if result["speedup"] >= 8 else "MISSES"
        print(
            f"speed-up at concurrency {result['concurrency']}: x{result['speedup']:.1f} "
            f"({verdict} the >= 8x target)"
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
