"""Reworkd sandbox: `GET /v1/outputs/{group_id}` as documented (docs/reworkd.md#the-sandbox).

The feed is an append-only change log by default (`mode="events"`): every create, update or
delete of a record appends a row with a new, increasing `id`, the cursor. `mode="latest"`
keeps one row per record instead and rewrites it in place on each change (same `id`). The
real API's model is not documented (docs/reworkd.md#change-types); the connector must be
right for both.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import orjson

from scrapesync.sandbox.base import ProviderAPI, SandboxRequest, SandboxResponse

DEFAULT_KEY = "rwk_sandbox_key"
EPOCH = datetime(2025, 1, 1)
STEP = timedelta(hours=1)
COUNTRIES = {"United States": "US", "Germany": "DE", "France": "FR"}
REGIONS = {"US": ["US-CA", "US-TX", "US-NY"], "DE": ["DE-BE", "DE-BY"], "FR": ["FR-IDF"]}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Group:
    group_id: str
    job_ids: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    # key_hash -> index in rows of the record's latest row
    latest: dict[str, int] = field(default_factory=dict)


class ReworkdAPI(ProviderAPI):
    """Deterministic, evolving Reworkd groups.

    Args:
        groups: number of groups, or explicit group ids.
        records_per_group: live records created before the first sync.
        seed: seed of the deterministic generator.
        mode: "events" (append-only change log) or "latest" (one row per record).
        api_keys: accepted Bearer tokens.
        cloned: build the records of one group and give every other group copies of them
            (own ids, output ids and key hashes; same data): 10,000 groups of 50 build in
            10-20 s instead of minutes (benchmarks).
    """

    name = "reworkd"
    DEMO_OPTIONS: ClassVar[Mapping[str, Any]] = {"groups": 2, "records_per_group": 2000}

    def __init__(
        self,
        groups: int | list[str] = 2,
        records_per_group: int = 300,
        seed: int = 7,
        mode: str = "events",
        api_keys: tuple[str, ...] = (DEFAULT_KEY,),
        cloned: bool = False,
    ) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.mode = mode
        self.api_keys = set(api_keys)
        self.clock = EPOCH
        self.next_id = 1000
        self.groups: dict[str, Group] = {}
        names = groups if isinstance(groups, list) else [self._uuid() for _ in range(groups)]
        template: list[dict[str, Any]] | None = None
        for group_id in names:
            if template is None or not cloned:
                template = self.add_group(group_id, records_per_group).rows
            else:
                self._clone_group(group_id, template)
        self.route("GET", r"/v1/outputs/(?P<group_id>[^/]+)", self.list_outputs)

    # -- data ---------------------------------------------------------------------------
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add_group(self, group_id: str, records: int = 0) -> Group:
        group = Group(group_id, [self._uuid() for _ in range(2)])
        self.groups[group_id] = group
        start = self.clock - timedelta(days=7)
        for index in range(records):
            moment = start + timedelta(seconds=int(index * 7 * 86400 / max(records, 1)))
            self.create(group_id, moment)
        return group

    def _clone_group(self, group_id: str, template: list[dict[str, Any]]) -> None:
        group = Group(group_id, [self._uuid() for _ in range(2)])
        self.groups[group_id] = group
        for index, source in enumerate(template):
            record = dict(source)
            record["key_hash"] = _md5(f"{group_id}/{index}")
            record["output_id"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            record["root_job_id"] = group.job_ids[index % 2]
            self._append(group, record)

    def create(self, group_id: str, at: datetime | None = None, key: str | None = None) -> str:
        """Create a record (a new `key_hash`) in a group; returns its key_hash."""
        group = self.groups[group_id]
        key_hash = key or _md5(f"{group_id}/{self._uuid()}")
        moment = at or self.clock
        record = self._record(group, key_hash, moment, moment, "CREATE")
        self._append(group, record)
        return key_hash

    def update(self, group_id: str, key_hash: str, at: datetime | None = None) -> None:
        group = self.groups[group_id]
        current = group.rows[group.latest[key_hash]]
        created = datetime.fromisoformat(current["create_date"])
        self._append(group, self._record(group, key_hash, created, at or self.clock, "UPDATE"))

    def delete(self, group_id: str, key_hash: str, at: datetime | None = None) -> None:
        group = self.groups[group_id]
        current = dict(group.rows[group.latest[key_hash]])
        moment = at or self.clock
        current.update(change_type="DELETE", update_date=_ts(moment), last_scraped_date=_ts(moment))
        self._append(group, current)

    def live_keys(self, group_id: str) -> list[str]:
        group = self.groups[group_id]
        return [
            key
            for key, index in group.latest.items()
            if group.rows[index]["change_type"] != "DELETE"
        ]

    def _record(
        self, group: Group, key_hash: str, created: datetime, updated: datetime, change: str
    ) -> dict[str, Any]:
        rng = self.rng
        country = rng.choice(list(COUNTRIES.values()))
        data = {
            "name": f"Product {rng.randint(1, 10**6)}",
            "price": round(rng.uniform(1, 500), 2),
            "currency": "USD",
            "in_stock": rng.random() > 0.2,
            "rating": rng.randint(1, 5),
            "images": [
                f"https://shop.example.com/img/{rng.randint(1, 10**9)}.jpg" for _ in range(2)
            ],
            "seller": {"name": f"Seller {rng.randint(1, 50)}", "verified": rng.random() > 0.5},
        }
        source_url = f"https://shop.example.com/p/{key_hash[:12]}"
        files = [
            self._file(source_url, created, index) for index in range(rng.choice((0, 1, 1, 2)))
        ]
        return {
            "id": 0,
            "output_id": self._uuid(),
            "root_job_id": rng.choice(group.job_ids),
            "is_approved": rng.random() > 0.1,
            "create_date": _ts(created),
            "update_date": _ts(updated),
            "last_scraped_date": _ts(updated),
            "source_url": source_url,
            "change_type": change,
            "key_hash": key_hash,
            "value_hash": _md5(orjson.dumps(data).decode()),
            "data": data,
            "tags": {
                "country": country,
                "region": rng.choice(REGIONS[country]),
                "external_customer_id": str(rng.randint(10000, 99999)),
            },
            "files": files,
        }

    def _file(self, source_url: str, created: datetime, index: int) -> dict[str, Any]:
        checksum = _md5(f"{source_url}/{index}/{self.rng.random()}")
        return {
            "create_date": _ts(created),
            "field": f"images[{index}]",
            "file_checksum": checksum,
            "file_metadata": {"width": 800, "height": 600},
            "file_type": "jpg",
            "file_url": f"{source_url}/image-{index}.jpg",
            "id": self._uuid(),
            "s3_key": f"{checksum}.jpg",
            "s3_url": f"https://files.reworkd.dev/{checksum}.jpg",
            "source_url": source_url,
            "url_etag_hash": _md5(checksum),
        }

    def _append(self, group: Group, record: dict[str, Any]) -> None:
        previous = group.latest.get(record["key_hash"])
        if self.mode == "latest" and previous is not None:
            record["id"] = group.rows[previous]["id"]
            group.rows[previous] = record
            group.encoded[previous] = orjson.dumps(record)
            return
        self.next_id += 1
        record["id"] = self.next_id
        group.rows.append(record)
        group.encoded.append(orjson.dumps(record))
        group.ids.append(record["id"])
        group.latest[record["key_hash"]] = len(group.rows) - 1

    def advance(self) -> dict[str, int]:
        """One hour passes: ~5% of live records change, ~2% are deleted, ~3% are new."""
        self.clock += STEP
        counts = {"created": 0, "updated": 0, "deleted": 0}
        for group_id in self.groups:
            live = self.live_keys(group_id)
            size = max(len(live), 20)
            changed = self.rng.sample(live, min(len(live), max(1, size * 7 // 100)))
            cut = len(changed) * 5 // 7
            for offset, key in enumerate(changed):
                moment = self.clock - STEP + timedelta(seconds=(offset * 37) % 3600)
                if offset < cut:
                    self.update(group_id, key, moment)
                    counts["updated"] += 1
                else:
                    self.delete(group_id, key, moment)
                    counts["deleted"] += 1
            for offset in range(max(1, size * 3 // 100)):
                self.create(group_id, self.clock - STEP + timedelta(seconds=offset * 11 % 3600))
                counts["created"] += 1
        return counts

    def truth(self) -> dict[str, Any]:
        """Per group, the latest row of every live record (what `outputs` must hold)."""
        return {
            group_id: {
                key: group.rows[index]
                for key, index in group.latest.items()
                if group.rows[index]["change_type"] != "DELETE"
            }
            for group_id, group in self.groups.items()
        }

    def expected_rows(self) -> dict[str, int]:
        live = [record for records in self.truth().values() for record in records.values()]
        return {
            "outputs": len(live),
            "outputs__files": sum(len(record["files"]) for record in live),
        }

    def source_options(self, base_url: str) -> dict[str, Any]:
        return {
            "base_url": base_url,
            "api_key": sorted(self.api_keys)[0],
            "group_ids": list(self.groups),
        }

    # -- HTTP -----------------------------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> SandboxResponse:
        # FastAPI's envelope, inferred (docs/reworkd.md#errors)
        return SandboxResponse.json({"detail": message, **extra}, status)

    def _validation_error(self, field_name: str, message: str, value: Any) -> SandboxResponse:
        detail = [
            {"loc": ["query", field_name], "msg": message, "type": "value_error", "input": value}
        ]
        return SandboxResponse.json({"detail": detail}, 422)

    def _authorize(self, request: SandboxRequest) -> SandboxResponse | None:
        header = request.header("authorization")
        if not header or not header.startswith("Bearer "):
            return self.error(403, "Not authenticated")
        if header.removeprefix("Bearer ").strip() not in self.api_keys:
            return self.error(401, "Invalid token")
        return None

    def list_outputs(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        denied = self._authorize(request)
        if denied:
            return denied
        group = self.groups.get(args["group_id"])
        if group is None:
            return self.error(404, "Not Found")
        numbers: dict[str, int] = {}
        for name, default in (("limit", "10"), ("cursor", "0")):
            raw = request.param(name, default) or default
            try:
                numbers[name] = int(raw)
            except ValueError:
                # FastAPI names the parameter that failed and echoes its value
                return self._validation_error(name, "Input should be a valid integer", raw)
        limit, cursor = numbers["limit"], numbers["cursor"]
        if not 1 <= limit <= 1000:
            return self._validation_error("limit", "Input should be between 1 and 1000", limit)
        if cursor < 0:
            return self._validation_error("cursor", "Input should be >= 0", cursor)
        created_after = request.param("created_after")
        since = _parse_since(created_after) if created_after else None
        if created_after and since is None:
            return self._validation_error("created_after", "Invalid datetime", created_after)
        matches = self._page(group, request, cursor, limit, since)
        next_cursor = group.rows[matches[-1]]["id"] if len(matches) == limit else None
        metadata = {
            # doc quirk kept on purpose: the documented example next_url points at /v1/items
            # (docs/reworkd.md#pagination)
            "next_url": f"{request.base_url}/v1/items?cursor={next_cursor}"
            if next_cursor
            else None,
            "next_cursor": next_cursor,
        }
        body = b"".join(
            [
                b'{"metadata":',
                orjson.dumps(metadata),
                b',"items":[',
                b",".join(group.encoded[index] for index in matches),
                b"]}",
            ]
        )
        return SandboxResponse.raw_json(body)

    def _page(
        self, group: Group, request: SandboxRequest, cursor: int, limit: int, since: str | None
    ) -> list[int]:
        filters = _filters(request)
        if self.mode == "latest":
            order = sorted(range(len(group.rows)), key=lambda i: group.rows[i]["id"])
            start = bisect.bisect_right([group.rows[i]["id"] for i in order], cursor)
            candidates: Any = order[start:]
        else:
            candidates = range(bisect.bisect_right(group.ids, cursor), len(group.rows))
        matches: list[int] = []
        for index in candidates:
            row = group.rows[index]
            if since and row["update_date"] < since and row["create_date"] < since:
                continue
            if filters and not all(check(row) for check in filters):
                continue
            matches.append(index)
            if len(matches) == limit:
                break
        return matches


def _parse_since(value: str) -> str | None:
    """`created_after` as a comparable naive-UTC string; None when it is not ISO 8601."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = (moment - (moment.utcoffset() or timedelta(0))).replace(tzinfo=None)
    return _ts(moment)


def _filters(request: SandboxRequest) -> list[Any]:
    checks: list[Any] = []
    job_id, url = request.param("job_id"), request.param("url")
    country, region = request.param("country"), request.param("region")
    if job_id:
        checks.append(lambda row: row["root_job_id"] == job_id)
    if url:
        checks.append(lambda row: row["source_url"] == url)
    if country:
        code = COUNTRIES.get(country, country)
        checks.append(lambda row: row["tags"]["country"] == code)
    if region:
        checks.append(lambda row: row["tags"]["region"] == region)
    return checks
