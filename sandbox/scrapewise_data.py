"""The Scrapewise sandbox's account: groups, scrapers, runs, scraped rows, failed links.

Separate from the HTTP routes (sandbox/scrapewise.py) so the state machine and the data rules
read on their own. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

EPOCH = datetime(2026, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
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


def is_object_id(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{24}", value or "") is not None


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
            scrapers = [s for s in self.scrapers.values() if s["groupId"] == group.id]
            self._begin(self.start_run(scrapers[0]))
            if len(scrapers) > 1:
                self.start_run(scrapers[1])

    def start_run(self, scraper: dict[str, Any], at: datetime | None = None) -> Run:
        moment = at or self.clock + timedelta(minutes=self.rng.randint(0, 50))
        run = Run(self.oid(), scraper["id"], scraper["name"], scraper["groupId"], moment)
        run.planned = self.rng.randint(10, 18)
        self.runs[run.id] = run
        return run

    def active_run(self, scraper_id: str) -> Run | None:
        for run in self.runs.values():
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
            run.state, run.finished, run.stop_reason = "STOPPED", self.clock, "USER_STOPPED"

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
        """Merge the rows of each scraper's latest COMPLETED run on `title` (SW-seed)."""
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

    # -- DTOs ------------------------------------------------------------------------------
    def run_dto(self, run: Run, with_deleted: bool = False) -> dict[str, Any]:
        terminal = run.state in TERMINAL and run.finished is not None
        dto: dict[str, Any] = {
            "id": run.id,
            "jobId": run.id,
            "scraperId": run.scraper_id,
            "scraperName": run.scraper_name,
            "groupId": run.group_id,
            "state": run.state,
            "started": utc(run.started),
            "finished": utc(run.finished) if terminal and run.finished else None,
            "successLinks": run.success_links,
            "errorLinks": run.error_links,
            "launchedByCustomer": run.launched_by_customer,
            "itemsQuantity": run.success_links,
            "totalRequests": run.success_links + run.error_links,
            "attempted": run.success_links + run.error_links,
            "notAttempted": max(0, run.planned - run.success_links) if terminal else 0,
            "duration": int((run.finished - run.started).total_seconds())
            if terminal and run.finished
            else None,
            "stopReason": run.stop_reason,
            "errorMessage": run.error_message,
            "continuable": False,
            "costLines": [{"type": "LINKS", "quantity": run.success_links, "amount": 0.0}],
        }
        if with_deleted and run.deleted:
            dto["deleted"] = True  # [I] how withDeleted marks a soft-deleted run
        return dto

    def _latest_run(self, scraper_id: str) -> Run | None:
        runs = [run for run in self.runs.values() if run.scraper_id == scraper_id]
        return max(runs, key=lambda run: run.started) if runs else None

    def scraper_summary(self, scraper: dict[str, Any]) -> dict[str, Any]:
        """`/api/scraper/list` projection: no `schemaId` (api-notes §2.6)."""
        last = self._latest_run(scraper["id"])
        return {
            "id": scraper["id"],
            "name": scraper["name"],
            "type": scraper["type"],
            "groupId": scraper["groupId"],
            "lastRun": utc(last.started) if last else None,
            "lastRunState": last.state if last else None,
        }

    def scraper_dto(self, scraper: dict[str, Any]) -> dict[str, Any]:
        fields = (
            ("price", "currency", "in_stock")
            if scraper["kind"] == "offer"
            else ("rating", "reviews", "seller")
        )
        return {
            **self.scraper_summary(scraper),
            "schemaId": None,
            "manual": False,
            "siteMap": False,
            "mapping": {},
            "shouldUseJavaScript": scraper["kind"] == "reviews",
            "createdAt": scraper["createdAt"],
            "updatedAt": scraper["createdAt"],
            "config": {
                "type": "SIMPLE",
                "timeout": 30,
                "itemsConfig": [{"name": name, "selector": f".{name}"} for name in fields],
                "postProcessRules": [],
                "sourceConfig": {
                    "url": scraper["url"],
                    "pagination": {"type": "URL_PAGE_PARAM", "param": "page", "max": 5},
                },
                "startType": "DAILY",
                "error": None,
            },
        }

    # -- what a correct sync holds --------------------------------------------------------
    def terminal_runs(self) -> list[Run]:
        return [run for run in self.runs.values() if run.state in TERMINAL]

    def truth(self) -> dict[str, Any]:
        enriched = {g.id for g in self.groups.values() if g.enriched_of}
        return {
            "jobs": {run.id: self.run_dto(run) for run in self.runs.values() if not run.deleted},
            "deleted_jobs": {run.id for run in self.runs.values() if run.deleted},
            "job_errors": {
                (run.id, link["url"])
                for run in self.terminal_runs()
                for link in self.errors.get(run.id, [])
            },
            "rows": {
                (row["_scraperJobStatusId"], row["_id"])
                for group, rows in self.rows.items()
                if group not in enriched
                for row in rows
                if self.runs[row["_scraperJobStatusId"]].state in TERMINAL
            },
            "enriched_rows": {
                (group, row["title"]) for group in enriched for row in self.rows[group]
            },
        }

    def expected_rows(self) -> dict[str, int]:
        truth = self.truth()
        expected = {
            "jobs": len(truth["jobs"]) + len(truth["deleted_jobs"]),
            "job_errors": len(truth["job_errors"]),
            "rows": len(truth["rows"]),
            "scrapers": len(self.scrapers),
        }
        if truth["enriched_rows"]:  # the table exists only once a merge was made
            expected["enriched_rows"] = len(truth["enriched_rows"])
        return expected


def parse_filters(text: str | None) -> dict[str, Any]:
    """`filters` query parameter: URL-decoded JSON object; empty means no filter."""
    if not text:
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(parsed, dict):
        raise ValueError("filters must be a JSON object")
    return parsed


_OPS = {
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$ne": lambda a, b: a != b,
    "$in": lambda a, b: a in b,
    "equals": lambda a, b: a == b,
    "notEquals": lambda a, b: a != b,
    "contains": lambda a, b: str(b).lower() in str(a).lower(),
    "greaterThan": lambda a, b: a is not None and a > b,
    "lessThan": lambda a, b: a is not None and a < b,
}


def _matches(row: dict[str, Any], condition: dict[str, Any]) -> bool:
    for key, wanted in condition.items():
        if key in ("$and", "$or", "$nor"):
            results = [_matches(row, part) for part in wanted]
            ok = all(results) if key == "$and" else any(results)
            if (key == "$nor") == ok:
                return False
            continue
        value = row.get(key)
        if not isinstance(wanted, dict):
            if value != wanted:
                return False
            continue
        # the per-column envelope dialect (api-notes §2.6) or Mongo-style operators
        ops = {wanted["$op"]: wanted.get("$value")} if "$op" in wanted else wanted
        for op, operand in ops.items():
            if op not in _OPS:
                raise ValueError(f"unknown operator {op!r}")
            if not _OPS[op](value, operand):
                return False
    return True


def filter_rows(rows: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    condition = parse_filters(text)
    return [row for row in rows if _matches(row, condition)] if condition else list(rows)


def sort_rows(rows: list[dict[str, Any]], sorts: list[str]) -> list[dict[str, Any]]:
    """Spring `sort=field,dir` (repeatable); stable, None first."""
    ordered = list(rows)
    for spec in reversed(sorts):
        name, _, direction = spec.partition(",")
        ordered.sort(
            key=lambda row: (0,) if row.get(name) is None else (1, row[name]),
            reverse=direction.lower() == "desc",
        )
    return ordered


def spring_page(rows: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
    """Spring's `Page<T>` with the framework's extra fields (api-notes §2.4)."""
    total = len(rows)
    pages = math.ceil(total / size)
    content = rows[page * size : (page + 1) * size]
    return {
        "content": content,
        "totalElements": total,
        "totalPages": pages,
        "size": size,
        "number": page,
        "numberOfElements": len(content),
        "first": page == 0,
        "last": page >= pages - 1,
        "empty": not content,
        "pageable": {"pageNumber": page, "pageSize": size, "offset": page * size},
        "sort": {"sorted": True, "unsorted": False, "empty": False},
    }
