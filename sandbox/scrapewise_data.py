"""The Scrapewise sandbox's account: groups, scrapers, runs, scraped rows, failed links.

Separate from the HTTP routes (sandbox/scrapewise.py) and the query semantics
(sandbox/scrapewise_query.py) so the state machine and the data rules read on their own.
Everything is deterministic for a given seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(2026, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
ACTIVE = ("PENDING", "RUNNING")
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")
# the two field families a scraper writes (rows keep the scraper's own field names)
FIELD_KINDS = ("offer", "reviews")
ERROR_SAMPLES = (
    (503, "Upstream temporarily unavailable"),
    (None, "Timeout after 30s"),
    (404, "Not Found"),
    (None, "Parser error: price selector matched nothing"),
)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Group:
    id: str
    name: str
    reference: str
    enriched_of: str | None = None

    def dto(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "reference": self.reference,
            "dataTable": self.name.replace("-", "_"),
            "startType": "DAILY",
            "displayCurrency": "EUR",
        }


@dataclass
class Run:
    id: str
    scraper_id: str
    scraper_name: str
    group_id: str
    started: datetime
    state: str = "PENDING"
    finished: datetime | None = None
    planned: int = 0
    success_links: int = 0
    error_links: int = 0
    stop_reason: str | None = None
    error_message: str | None = None
    deleted: bool = False
    data_deleted: bool = False
    launched_by_customer: bool = True
    last_scraped: datetime | None = None  # the newest `_scrapedAt` among the run's rows

    def ended_by(self, moment: datetime) -> datetime:
        """When a run stopped at `moment` ends: never before its start or its last row."""
        return max(moment, self.started, self.last_scraped or self.started)

    def matches(self, filters: dict[str, Any]) -> bool:
        wanted = {"groupId": self.group_id, "scraperId": self.scraper_id, "state": self.state}
        return all(wanted.get(key, value) == value for key, value in filters.items())


@dataclass
class ScrapewiseData:
    rng: random.Random
    group_count: int
    scrapers_per_group: int
    clock: datetime = EPOCH
    groups: dict[str, Group] = field(default_factory=dict)
    scrapers: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    catalog: dict[str, list[str]] = field(default_factory=dict)
    # runs of each scraper, in creation order: `latest_run` without a scan of every run
    by_scraper: dict[str, list[Run]] = field(default_factory=dict)
    # scrapers of each group: a group's runs and scraper list without a scan of every scraper
    scrapers_of: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for index in range(self.group_count):
            group = Group(self.oid(), f"competitor-prices-{index + 1}", self.uuid())
            self.groups[group.id] = group
            self.rows[group.id] = []
            self.catalog[group.id] = [
                f"40{self.rng.randint(10**10, 10**11 - 1)}" for _ in range(40)
            ]
            for number in range(self.scrapers_per_group):
                self.add_scraper(group, number)

    def oid(self) -> str:
        return f"{self.rng.getrandbits(96):024x}"

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add_scraper(self, group: Group, number: int) -> dict[str, Any]:
        kind = FIELD_KINDS[number % len(FIELD_KINDS)]
        scraper = {
            "id": self.oid(),
            "name": f"{group.name}-{kind}-{number + 1}",
            "type": "MULTIPLE_PRODUCTS" if kind == "offer" else "SINGLE_PRODUCT",
            "groupId": group.id,
            "kind": kind,
            "url": f"https://shop{number + 1}.example.com/catalog",
            "createdAt": utc(EPOCH - timedelta(days=30)),
        }
        self.scrapers[scraper["id"]] = scraper
        self.scrapers_of.setdefault(group.id, []).append(scraper)
        return scraper

    # -- run state machine ----------------------------------------------------------------
    def seed_history(self, runs_per_scraper: int) -> None:
        """Terminal runs in the past, then one RUNNING and one PENDING run per group."""
        for _ in range(runs_per_scraper):
            for scraper in self.scrapers.values():
                run = self.start_run(scraper)
                self._begin(run)
                self._finish(run)
            self.clock += HOUR
        for group in self.groups.values():
            scrapers = self.scrapers_of.get(group.id, [])
            self._begin(self.start_run(scrapers[0]))
            if len(scrapers) > 1:
                self.start_run(scrapers[1])

    def candidate_runs(self, filters: dict[str, Any]) -> Iterable[Run]:
        """The runs `filters` can match, narrowed by the indexes (callers still match them)."""
        scraper_id, group_id = filters.get("scraperId"), filters.get("groupId")
        if isinstance(scraper_id, str):
            return list(self.by_scraper.get(scraper_id, []))
        if isinstance(group_id, str):
            scrapers = self.scrapers_of.get(group_id, [])
            return [run for s in scrapers for run in self.by_scraper.get(s["id"], [])]
        return list(self.runs.values())

    def start_run(self, scraper: dict[str, Any], at: datetime | None = None) -> Run:
        """Queue a run at `at`, or within the current hour but after the scraper's last run.

        The clock is the start of the hour and runs start within it, so a run queued right
        after a stop could otherwise start before the stopped run (and `latest_run()` of the
        SDK, the newest `started`, would name the stopped one). `at` is taken as given.
        """
        moment = at or self.clock + timedelta(minutes=self.rng.randint(0, 50))
        previous = self.latest_run(scraper["id"]) if at is None else None
        if previous is not None:
            moment = max(moment, (previous.finished or previous.started) + SECOND)
        run = Run(self.oid(), scraper["id"], scraper["name"], scraper["groupId"], moment)
        run.planned = self.rng.randint(10, 18)
        self.runs[run.id] = run
        self.by_scraper.setdefault(run.scraper_id, []).append(run)
        return run

    def active_run(self, scraper_id: str) -> Run | None:
        for run in self.by_scraper.get(scraper_id, []):
            if run.scraper_id == scraper_id and run.state in ACTIVE:
                return run
        return None

    def _begin(self, run: Run) -> None:
        run.state = "RUNNING"
        self._write_rows(run, run.planned // 2)  # rows land while the run is still going

    def _finish(self, run: Run, state: str | None = None) -> None:
        roll = self.rng.random()
        run.state = state or ("COMPLETED" if roll < 0.8 else "FAILED" if roll < 0.9 else "STOPPED")
        run.finished = run.started + timedelta(minutes=self.rng.randint(3, 9))
        if run.state == "COMPLETED":
            self._write_rows(run, run.planned - run.planned // 2)
        if run.state == "STOPPED":
            run.stop_reason = "TIME_LIMIT"
        if run.state == "FAILED":
            run.error_message = "Too many consecutive link failures"
        failures = self.rng.choice((0, 1, 2, 3)) + (5 if run.state == "FAILED" else 0)
        self.add_errors(run, failures)

    def add_errors(self, run: Run, count: int) -> None:
        scraper = self.scrapers[run.scraper_id]
        links = self.errors.setdefault(run.id, [])
        for _ in range(count):
            status, message = self.rng.choice(ERROR_SAMPLES)
            url = f"{scraper['url']}/p/{self.rng.randint(1, 10**6)}-{len(links)}"
            links.append({"url": url, "status": status, "error": message})
        run.error_links = len(links)

    def _write_rows(self, run: Run, count: int) -> None:
        scraper = self.scrapers[run.scraper_id]
        group = self.groups[run.group_id]
        titles = self.rng.sample(self.catalog[group.id], count)
        base = run.started + timedelta(minutes=1)
        for index, title in enumerate(titles):
            at = base + timedelta(seconds=index * 7)
            url = f"{scraper['url']}/p/{title}"
            row: dict[str, Any] = {
                "_id": self.oid(),
                "_sourceUrl": url,
                "_scrapedAt": utc(at),
                "_scraperJobStatusId": run.id,
                "_sw_scraper": scraper["name"],
                "_sw_group": group.name,
                "_sw_run_date": at.strftime("%Y-%m-%d"),
                "_sw_run_time": at.strftime("%H:%M:%S"),
                "title": title,
                "url": url,
            }
            row.update(self._fields(scraper["kind"]))
            self.rows[group.id].append(row)
            run.last_scraped = max(at, run.last_scraped or at)
        run.success_links += count

    def _fields(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        if kind == "offer":
            return {
                "price": round(rng.uniform(5, 500), 2),
                "currency": "EUR",
                "in_stock": rng.random() > 0.2,
            }
        return {
            "rating": rng.randint(1, 5),
            "reviews": rng.randint(0, 5000),
            "seller": f"Seller {rng.randint(1, 30)}",
        }

    def advance(self) -> dict[str, int]:
        """One hour: RUNNING runs end, PENDING runs start, every idle scraper queues a run."""
        self.clock += HOUR
        counts = {"finished": 0, "started": 0, "queued": 0}
        active = [run for run in self.runs.values() if run.state in ACTIVE and not run.deleted]
        for run in active:
            if run.state == "RUNNING":
                self._finish(run)
                counts["finished"] += 1
            else:
                self._begin(run)
                counts["started"] += 1
        for scraper in list(self.scrapers.values()):
            if self.active_run(scraper["id"]) is None:
                self.start_run(scraper)
                counts["queued"] += 1
        return counts

    def stop(self, scraper_id: str) -> None:
        """Synchronous: a RUNNING run ends STOPPED, a PENDING one is terminalised too."""
        run = self.active_run(scraper_id)
        if run is not None:
            # stopped now: at the clock, but never before the run started (no negative duration)
            run.state, run.finished = "STOPPED", run.ended_by(self.clock)
            run.stop_reason = "USER_STOPPED"

    def soft_delete(self, run_id: str) -> None:
        self.runs[run_id].deleted = True

    def last_run_of_group(self, group_id: str) -> str | None:
        runs = [run for run in self.runs.values() if run.group_id == group_id]
        return max(runs, key=lambda run: run.started).id if runs else None

    def delete_run_rows(self, run: Run) -> int:
        rows = self.rows[run.group_id]
        kept = [row for row in rows if row["_scraperJobStatusId"] != run.id]
        self.rows[run.group_id] = kept
        run.data_deleted = True
        return len(rows) - len(kept)

    # -- merge into the enriched sibling --------------------------------------------------
    def merge(self, group: Group, run_ids: list[str]) -> int:
        """Merge the rows of each scraper's latest COMPLETED run on `title`.

        As documented: docs/scrapewise.md#enriched-data.
        """
        accepted = [
            run
            for run_id in run_ids
            if (run := self.runs.get(run_id)) is not None
            and run.group_id == group.id
            and run.state == "COMPLETED"
            and run.id == self._latest_completed(run.scraper_id)
        ]
        if not accepted:
            return 0
        by_run = [
            {row["title"]: row for row in self.rows[group.id] if row["_scraperJobStatusId"] == r.id}
            for r in accepted
        ]
        merged: list[dict[str, Any]] = []
        for title, row in by_run[0].items():
            matches = [rows[title] for rows in by_run[1:] if title in rows]
            if len(accepted) > 1 and not matches:
                continue
            combined = {"_id": self.oid(), "title": title, "_enrichedAt": utc(self.clock)}
            for source in (row, *matches):
                combined.update({k: v for k, v in source.items() if not k.startswith("_")})
            merged.append(combined)
        if merged:
            self.rows[self._sibling(group).id] = merged
        return len(merged)

    def _latest_completed(self, scraper_id: str) -> str | None:
        done = [
            run
            for run in self.runs.values()
            if run.scraper_id == scraper_id and run.state == "COMPLETED" and not run.deleted
        ]
        return max(done, key=lambda run: run.started).id if done else None

    def _sibling(self, group: Group) -> Group:
        for candidate in self.groups.values():
            if candidate.enriched_of == group.id:
                return candidate
        sibling = Group(self.oid(), f"{group.name}_enriched", group.reference, group.id)
        self.groups[sibling.id] = sibling
        return sibling

    def latest_run(self, scraper_id: str) -> Run | None:
        runs = self.by_scraper.get(scraper_id, [])
        return max(runs, key=lambda run: run.started) if runs else None

    # -- what a correct sync holds --------------------------------------------------------
    def terminal_runs(self) -> list[Run]:
        return [run for run in self.runs.values() if run.state in TERMINAL]
