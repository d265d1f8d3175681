"""Crash soak: many syncs killed with SIGKILL at random points, each followed by a clean sync.

    .venv/bin/python -m benchmarks.soak_crash [--provider reworkd] [--cycles 50] [--seed 1]

Every cycle: the sandbox's data changes, `scrapesync sync <provider>` runs in a child process
and is killed either at an observed point (inside extract, after extract, inside the load,
after the load), right after the destination committed a load job of a random table (before
dlt recorded it), or after a random delay; the data changes again; one clean sync runs; the
destination is compared with the sandbox's truth (no loss, no duplicate key, deletes applied).
Prints the runs, the kills that landed and the mismatches; exits 1 on any mismatch. Not run in
CI (minutes per provider); `tests/test_crash.py` runs a handful of the same kill points.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scrapesync.pipelines.runner import keyed_tables, pipeline_for
from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.crash import KILL_POINTS, clean_sync, killed_sync
from scrapesync.sandbox.truth import mismatches

SANDBOX: dict[str, dict[str, Any]] = {
    "reworkd": {"groups": ["g-a", "g-b", "g-c"], "records_per_group": 3000},
    "scrapewise": {"runs_per_scraper": 8},
    "opencx": {"rate_limit": 100_000},
    # restarts and removals every other step; results kept for the whole soak, since up to
    # five steps (hours) pass between two clean syncs and expiry is not what this checks
    "outscraper": {"tasks": 30, "churn_every": 2, "retention_hours": 10_000},
    # the sync's side of Oxylabs: collecting the jobs scheduled runs start (submission is
    # killed in tests/test_oxylabs_crash.py); results kept, as above; checked by row counts
    "oxylabs": {"schedules": 4, "result_ttl_steps": 10_000, "html_bytes": 200},
}
OPTIONS = {
    "reworkd": {"page_size": 200},
    "scrapewise": {"page_size": 5},
    "opencx": {},
    "outscraper": {"page_size": 5},
    "oxylabs": {},
}


def soak(provider: str, cycles: int, rng: random.Random, workdir: Path) -> tuple[int, int, int]:
    """Returns (runs, kills that landed, cycles that ended with a mismatch)."""
    os.chdir(workdir)
    os.environ["DLT_DATA_DIR"] = str(workdir / "dlt")
    sandbox = Sandbox.start_default({provider: SANDBOX[provider]})
    runs = kills = bad = 0
    try:
        code, _, err = clean_sync(sandbox, provider, workdir, OPTIONS[provider])
        runs += 1
        if code != 0:
            raise RuntimeError(f"the first sync failed: {err[-2000:]}")
        for cycle in range(1, cycles + 1):
            sandbox.advance(rng.randint(1, 3))
            point = rng.choice([*KILL_POINTS, "timer"])
            if point == "timer":
                point = f"timer:{rng.uniform(0.5, 6.0):.2f}"
            elif point == "committed":  # lands only if this sync loads rows into that table
                point = f"committed:{rng.choice(sorted(keyed_tables(pipeline_for(provider))))}"
            landed = killed_sync(sandbox, provider, workdir, point, OPTIONS[provider])
            kills += landed
            sandbox.advance(rng.randint(0, 2))
            code, out, err = clean_sync(sandbox, provider, workdir, OPTIONS[provider])
            runs += 2
            problems = mismatches(pipeline_for(provider), provider, sandbox.providers[provider])
            if code != 0:
                problems.append(f"clean sync exited {code}: {(out + err)[-1500:]}")
            bad += bool(problems)
            status = "MISMATCH" if problems else "ok"
            print(f"{provider} cycle {cycle:3d} kill at {point:<28} landed={landed!s:<5} {status}")
            for problem in problems:
                print(f"    {problem}")
    finally:
        sandbox.stop()
    return runs, kills, bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=[*SANDBOX, "all"], default="reworkd")
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    providers = list(SANDBOX) if args.provider == "all" else [args.provider]
    rng = random.Random(args.seed)
    failed = 0
    for provider in providers:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"soak-{provider}-") as folder:
            runs, kills, bad = soak(provider, args.cycles, rng, Path(folder))
        minutes = (time.monotonic() - started) / 60
        print(
            f"{provider}: runs={runs} kills={kills} mismatches={bad} "
            f"({args.cycles} cycles, {minutes:.1f} min)",
            flush=True,
        )
        failed += bad
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
