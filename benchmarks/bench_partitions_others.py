"""Many partitions in one run: open.cx datasources, Scrapewise groups, Outscraper request ids,
Oxylabs jobs.

    .venv/bin/python -m benchmarks.bench_partitions_others [--partitions 10000]
        [--latency 0.005] [--provider opencx --provider scrapewise ...]

For each provider the sandbox holds `--partitions` partitions with a few rows each and answers
every request after `--latency` seconds; a full sync and then a sync with nothing changed run
in a child process (`benchmarks/child.py`) into a fresh DuckDB file. Printed per sync: wall
seconds, requests, peak RSS, and the size of the pipeline state that dlt stores (the JSON
blob in `_dlt_pipeline_state`, compressed as dlt writes it). The sandbox's own rate limits are
lifted and the connector's pacing raised to match, so the numbers show the connector's
per-partition cost, not the provider's budget (open.cx allows 100 requests a minute: at that
pace 10,000 datasources take at least 10,000 x 2 / 100 = 200 minutes whatever the code).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.child import child_sync
from scrapesync.sandbox import Sandbox

PROVIDERS = ("opencx", "scrapewise", "outscraper", "oxylabs")
WORKERS = 16


def setup(provider: str, partitions: int, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sandbox options (a world of `partitions` with a few rows each) and source options."""
    world: dict[str, Any]
    if provider == "opencx":
        world = {"datasources": partitions, "jobs_per_datasource": 1, "list_page_size": 100}
        return {**world, "rate_limit": 10**9}, {"page_size": 100, "concurrency": WORKERS}
    if provider == "scrapewise":
        world = {"groups": partitions, "scrapers_per_group": 1, "runs_per_scraper": 1}
        return {**world, "rate_limit": None, "features": ()}, {
            "page_size": 1000,
            "concurrency": WORKERS,
        }
    if provider == "outscraper":
        world = {"tasks": 1, "rows_per_task": 5, "requests": partitions}
        return world, {"concurrency": WORKERS}
    world = {"schedules": 0, "html_bytes": 500, "workdir": str(work / "sandbox")}
    return world, {"scheduler": False, "concurrency": WORKERS, "requests_per_second": 10_000.0}


def configured(provider: str, sandbox: Sandbox, partitions: int, work: Path) -> dict[str, Any]:
    """The partition list as a user configures it (open.cx reads every listed datasource).

    Long lists go to the child's `.dlt/config.toml` (its working dir): 10,000 ids are too long
    for one command-line argument.
    """
    api: Any = sandbox.providers[provider]
    listed: dict[str, list[str]] = {}
    if provider == "scrapewise":
        listed = {"group_ids": list(api.data.groups)}
    if provider == "outscraper":
        listed = {"request_ids": list(api.requests)}
    if listed:
        lines = [f"[sources.{provider}]"]
        lines += [f"{key} = {json.dumps(values)}" for key, values in listed.items()]
        (work / ".dlt").mkdir(exist_ok=True)
        (work / ".dlt" / "config.toml").write_text("\n".join(lines) + "\n")
    if provider == "oxylabs":
        from scrapesync.sources.oxylabs import connect

        # a local ledger file: the submitting process is not the syncing one
        ledger: dict[str, Any] = {"journal_path": str(Path(api.workdir) / "ledger.sqlite")}
        submitter = connect(**api.source_options(sandbox.url(provider)), **ledger).submitter
        queries = [f"bench {n}" for n in range(partitions)]
        submitter.submit(queries, "query", {"source": "universal"})
        api.advance()
        return ledger
    return {}


def state_bytes(workdir: Path, dataset: str) -> int:
    """Size of the newest state blob dlt stored in the destination."""
    with duckdb.connect(str(workdir / "scrapesync.duckdb"), read_only=True) as db:
        row = db.sql(
            f"SELECT length(state) FROM {dataset}._dlt_pipeline_state ORDER BY version DESC LIMIT 1"
        ).fetchone()
    return int(row[0]) if row else 0


def measure(provider: str, partitions: int, latency: float, tmp: Path) -> list[dict[str, Any]]:
    work = tmp / provider
    work.mkdir(parents=True)
    built = time.perf_counter()
    sandbox_options, source_options = setup(provider, partitions, work)
    sandbox = Sandbox.start_default({provider: sandbox_options})
    results = []
    try:
        api: Any = sandbox.providers[provider]
        options = {
            **api.source_options(sandbox.url(provider)),
            **source_options,
            **configured(provider, sandbox, partitions, work),
        }
        api.latency = latency
        print(f"{provider}: world of {partitions:,} built in {time.perf_counter() - built:.0f} s")
        for label in ("full", "no change"):
            sandbox.requests.clear()
            result = child_sync(provider, options, work)
            result["label"] = label
            result["sandbox_requests"] = len(sandbox.requests.entries(provider))
            result["state_kib"] = state_bytes(work, provider) / 1024
            results.append(result)
            print(
                f"  {label:<10} {result['seconds']:7.1f} s  "
                f"{result['sandbox_requests']:>7,} requests  "
                f"{result['sandbox_requests'] / partitions:5.2f} per partition  "
                f"peak RSS {result['peak_rss_mib']:6.0f} MiB  state {result['state_kib']:8.1f} KiB",
                flush=True,
            )
    finally:
        sandbox.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--provider", action="append", choices=PROVIDERS)
    args = parser.parse_args()
    # the child's stderr is read only after it exits: a warning per partition would fill the
    # pipe and block it (benchmarks/child.py)
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
    print(f"{args.partitions:,} partitions per provider, {args.latency * 1000:.0f} ms latency")
    with tempfile.TemporaryDirectory() as tmp:
        for provider in args.provider or PROVIDERS:
            measure(provider, args.partitions, args.latency, Path(tmp))


if __name__ == "__main__":
    main()
