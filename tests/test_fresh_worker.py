"""Fresh workers: every sync on a new, empty dlt data dir ends with the same tables as a
long-lived worker's.

Schedulers (Airflow, Dagster, Kubernetes jobs, CI) may start every run on a machine whose local
disk is empty; only the destination persists. Each test runs two workers side by side over three
evolving epochs (`Sandbox.advance()`), each with its own DuckDB file, configured through env
vars as a scheduler would (`DLT_DATA_DIR`, `DESTINATION__DUCKDB__CREDENTIALS`). Both read one
sandbox (reading changes nothing there), except for Oxylabs, where each worker submits its own
jobs to its own sandbox (same options, same submissions, so the same job ids):

* the long-lived worker keeps one data dir for all its syncs;
* the fresh worker syncs on a new empty data dir every time.

After every epoch both destinations equal the sandbox's truth (`sandbox/truth.py`), and every
table of the provider holds the same rows in both (dlt's own `_dlt_*` columns aside: load ids
and row ids differ by design).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import pipeline_for, sync
from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.truth import mismatches

OPTIONS: dict[str, dict[str, Any]] = {
    "reworkd": {"groups": ["g-a", "g-b"], "records_per_group": 120},
    "scrapewise": {"runs_per_scraper": 3},
    "opencx": {"rate_limit": 1000},
    "outscraper": {"tasks": 8, "churn_every": 1},
    "oxylabs": {},  # one Scheduler schedule, plus the jobs the test submits
}
EPOCHS = 3
# columns stamped with the clock of the sync that saw the change, not data from the provider:
# two workers syncing the same change a few seconds apart differ there by design
OBSERVED_AT = {"first_seen_at", "collected_at", "expired_at", "removed_at"}
# Oxylabs batches are named by the submitting worker (a random id) and stamped with its clock,
# and each worker's sandbox runs its own clock: the same jobs, other ids and times
PER_WORKER = {"batch_id", "created_at", "sent_at", "answered_at", "submitted_at", "finished_at"}
OXYLABS_QUERIES = [f"fresh worker {n}" for n in range(12)]


class Worker:
    """One worker: its sandbox, its DuckDB file and how it picks its data dir."""

    def __init__(self, name: str, sandbox: Sandbox, root: Path, fresh: bool) -> None:
        self.name, self.sandbox, self.root, self.fresh = name, sandbox, root / name, fresh
        self.runs = 0
        self.synced_in: list[Path] = []  # the data dir of every sync, in order
        self.db = self.root / "scrapesync.duckdb"
        self.root.mkdir(parents=True)

    def data_dir(self) -> Path:
        return self.root / (f"data-{self.runs}" if self.fresh else "data")

    def enter(self, monkeypatch: pytest.MonkeyPatch) -> Path:
        """Configure this process as the worker for its next run; returns the data dir."""
        data_dir = self.data_dir()
        assert not self.fresh or not data_dir.exists(), "a fresh worker starts empty"
        monkeypatch.setenv("DLT_DATA_DIR", str(data_dir))
        monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(self.db))
        return data_dir

    def options(self, provider: str) -> dict[str, Any]:
        return self.sandbox.providers[provider].source_options(self.sandbox.url(provider))

    def sync(self, provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced_in.append(self.enter(monkeypatch))
        report = sync(registry.get(provider), source_options=self.options(provider))
        self.runs += 1
        assert report.ok, f"{self.name}: {report.error}"

    def submit(self, monkeypatch: pytest.MonkeyPatch, values: list[str]) -> None:
        from scrapesync.sources.oxylabs import connect

        self.enter(monkeypatch)
        connect(**self.options("oxylabs")).submitter.submit(
            values, "query", {"source": "google_search"}
        )
        self.runs += 1

    def problems(self, provider: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        monkeypatch.setenv("DLT_DATA_DIR", str(self.root / "reader"))
        monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(self.db))
        pipeline = pipeline_for(provider)
        pipeline.sync_destination()  # a reader on yet another machine: schema from the destination
        return mismatches(pipeline, provider, self.sandbox.providers[provider])


def table_rows(db: Path, dataset: str) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every table of `dataset`, as a multiset of rows without dlt's own columns (and without
    the columns that say when a sync observed a change, `OBSERVED_AT`)."""
    with duckdb.connect(str(db), read_only=True) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                "AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'",
                [dataset],
            ).fetchall()
        ]
        found = {}
        for table in tables:
            columns = [
                name
                for (name,) in connection.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                    "AND table_name = ? AND column_name NOT LIKE '\\_dlt%' ESCAPE '\\' "
                    "ORDER BY column_name",
                    [dataset, table],
                ).fetchall()
            ]
            skipped = OBSERVED_AT | (PER_WORKER if dataset == "oxylabs" else set())
            listed = ", ".join(f'"{name}"' for name in columns if name not in skipped)
            rows = connection.execute(f'SELECT {listed} FROM "{dataset}"."{table}"').fetchall()
            found[table] = Counter(rows)
    return found


def differences(left: Path, right: Path, dataset: str) -> list[str]:
    a, b = table_rows(left, dataset), table_rows(right, dataset)
    found = [f"table {t} only in one worker" for t in sorted(set(a) ^ set(b))]
    for table in sorted(set(a) & set(b)):
        only_a, only_b = a[table] - b[table], b[table] - a[table]
        if only_a or only_b:
            found.append(
                f"{table}: {sum(only_a.values())} rows only long-lived (e.g. {list(only_a)[:1]}), "
                f"{sum(only_b.values())} only fresh (e.g. {list(only_b)[:1]})"
            )
    return found


@pytest.fixture
def workers(
    isolated: Path, make_sandbox: Callable[..., Sandbox]
) -> Callable[[str], tuple[Worker, Worker]]:
    def build(provider: str) -> tuple[Worker, Worker]:
        options = dict(OPTIONS[provider])
        if provider != "oxylabs":
            shared = make_sandbox(**{provider: options})
            return Worker("long", shared, isolated, False), Worker("fresh", shared, isolated, True)
        sandboxes = [
            make_sandbox(oxylabs={**options, "workdir": str(isolated / f"oxylabs-{name}")})
            for name in ("long", "fresh")
        ]
        return Worker("long", sandboxes[0], isolated, False), Worker(
            "fresh", sandboxes[1], isolated, True
        )

    return build


CASES = [
    "reworkd",
    "scrapewise",
    "opencx",
    "outscraper",
    "oxylabs",
]


@pytest.mark.parametrize("provider", CASES)
def test_given_a_fresh_data_dir_for_every_sync_when_the_provider_evolves_then_tables_match_a_long_lived_worker(  # noqa: E501
    workers: Callable[[str], tuple[Worker, Worker]],
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
) -> None:
    long_lived, fresh = workers(provider)
    sandboxes = {id(w.sandbox): w.sandbox for w in (long_lived, fresh)}.values()
    for epoch in range(EPOCHS):
        for sandbox in sandboxes if epoch else ():
            sandbox.advance()
        for worker in (long_lived, fresh):
            if provider == "oxylabs" and epoch < 2:
                # jobs submitted on one worker, collected by later syncs (on other fresh ones)
                worker.submit(monkeypatch, OXYLABS_QUERIES[epoch * 6 : epoch * 6 + 6])
            worker.sync(provider, monkeypatch)

        used = fresh.synced_in
        assert len(set(used)) == len(used), "a new data dir for every sync"
        assert all(d.is_dir() for d in used), "every sync used its own data dir"
        for worker in (long_lived, fresh):
            problems = worker.problems(provider, monkeypatch)
            assert problems == [], f"epoch {epoch}, {worker.name}:\n" + "\n".join(problems)
        found = differences(long_lived.db, fresh.db, provider)
        assert found == [], f"epoch {epoch}:\n" + "\n".join(found)
    if provider == "oxylabs":
        truth = fresh.sandbox.providers["oxylabs"].truth()
        jobs = table_rows(fresh.db, "oxylabs")["jobs"]
        assert len(jobs) == len(truth), "every job the sandbox ran is in the fresh ledger"
