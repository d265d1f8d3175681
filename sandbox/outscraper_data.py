"""The Outscraper sandbox's records: tasks, async requests, result rows, files and webhooks.

Pure generation, apart from the state machine (sandbox/outscraper_account.py) and the HTTP
routes (sandbox/outscraper.py), so the shapes read on their own. Everything is deterministic:
a row is a hash of its owner, query and index. Shapes follow docs/outscraper.md.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import mmap
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

import orjson

DEFAULT_KEY = "os_sandbox_key"
EPOCH = datetime(2025, 1, 1)
STEP = timedelta(hours=1)
FORMATS = ("json", "csv", "json-nested", "csv-octet")
CSV_COLUMNS = ("query", "name", "place_id", "rating", "reviews", "phone", "full_address", "site")


def timestamp(moment: datetime) -> str:
    """Outscraper's naive ISO form with microseconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass
class Task:
    id: str
    created: datetime
    updated: datetime
    fmt: str
    rows: int
    queries: list[str]
    tags: list[str]
    status: str = "PENDING"
    version: int = 1
    queue_task_id: str = ""
    fail: bool = False

    def as_json(self, files_url: str) -> dict[str, Any]:
        results: list[dict[str, Any]] = [{"product_name": "Google Maps Data", "quantity": 0}]
        if self.status == "SUCCESS":
            url = f"{files_url}/files/{self.id}/{self.version}?sig={self.queue_task_id[:8]}"
            results = [
                {"product_name": "Google Maps Data", "file_url": url, "quantity": self.rows},
                {"product_name": "Domains", "quantity": self.rows},
            ]
        return {
            "id": self.id,
            "user_id": "sandbox-user",
            "status": self.status,
            "created": timestamp(self.created),
            "updated": timestamp(self.updated),
            "queue_task_id": self.queue_task_id,
            "metadata": {
                "service_name": "google_maps_service_v2",
                "queries": self.queries,
                "tags": self.tags,
            },
            "results": results,
        }


@dataclass
class AsyncRequest:
    id: str
    queries: list[str]
    rows_per_query: int
    status: str = "Pending"
    finished_at: datetime | None = None
    fail: bool = False
    data: list[list[dict[str, Any]]] = field(default_factory=list)

    def as_json(self, flat: bool) -> dict[str, Any]:
        """A finished request's answer: one array per query, or one array with `flat=true`."""
        data: list[Any] = [row for rows in self.data for row in rows] if flat else self.data
        return {"id": self.id, "status": self.status, "data": data}


def place_row(owner: str, query: str, index: int) -> dict[str, Any]:
    """One Google Maps place, derived from a hash of (owner, query, index)."""
    digest = hashlib.md5(f"{owner}/{query}/{index}".encode(), usedforsecurity=False)
    code = digest.hexdigest()
    return {
        "query": query,
        "name": f'Place "{code[:4]}" #{index}',
        "place_id": f"ChIJ{code[:20]}",
        "rating": round(1 + (int(code[:2], 16) % 40) / 10, 1),
        "reviews": int(code[2:6], 16) % 5000,
        "phone": f"+1 212-555-{int(code[6:10], 16) % 10000:04d}",
        "full_address": f"{index} Main St, New York, NY 1000{index % 10}",
        "site": f"https://{code[:8]}.example.com/",
        "working_hours": {"Monday": "9AM-5PM", "Sunday": "Closed"},
        "types": ["restaurant", "bar"],
    }


def task_file_rows(task: Task) -> list[dict[str, Any]]:
    """The rows of a task's current result file (they change with its version)."""
    per_query = -(-task.rows // len(task.queries))
    rows = [
        place_row(f"{task.id}/{task.version}", query, i)
        for query in task.queries
        for i in range(per_query)
    ]
    return rows[: task.rows]


def file_chunks(task: Task, rows: list[dict[str, Any]]) -> Iterator[bytes]:
    """The result file in the task's format: flat JSON, JSON per query, or CSV."""
    if task.fmt.startswith("csv"):
        yield from csv_chunks(rows)
    elif task.fmt == "json-nested":
        groups = [[r for r in rows if r["query"] == q] for q in task.queries]
        yield b"[" + b",".join(orjson.dumps(group) for group in groups) + b"]"
    else:
        yield b"[\n" + b",\n".join(orjson.dumps(row) for row in rows) + b"\n]"


def csv_chunks(rows: list[dict[str, Any]], header: bool = True) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow([*CSV_COLUMNS, "working_hours.Monday"])
    for row in rows:
        writer.writerow([*(row[name] for name in CSV_COLUMNS), row["working_hours"]["Monday"]])
    yield buffer.getvalue().encode()


def large_csv(task: Task, megabytes: float) -> tuple[IO[bytes], mmap.mmap, int]:
    """A CSV of about `megabytes` MB in a temporary file: (file, its mmap, rows written).

    The caller keeps the file open as long as the mmap is served.
    """
    target = int(megabytes * 1_000_000)
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the sandbox)
    written = rows = 0
    block = [place_row(task.id, task.queries[0], i) for i in range(1000)]
    header = True
    while written < target:
        chunk = b"".join(csv_chunks(block, header=header))
        header = False
        handle.write(chunk)
        written += len(chunk)
        rows += len(block)
    handle.flush()
    return handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), rows


def webhook_body(object_id: str, status: str, api_task: bool) -> bytes:
    """The JSON Outscraper POSTs when a task or request finishes (docs/outscraper.md#webhooks)."""
    return orjson.dumps(
        {
            "id": object_id,
            "user_id": "sandbox-user",
            "status": status,
            "api_task": api_task,
            "results_location": f"https://api.outscraper.cloud/requests/{object_id}",
            "quota_usage": [{"product_name": "Google Maps Data", "quantity": 1}],
        }
    )


def sign(api_key: str, body: bytes) -> str:
    """`X-Hub-Signature-256`: HMAC-SHA256 of the raw body keyed with the API key."""
    return "sha256=" + hmac.new(api_key.encode(), body, hashlib.sha256).hexdigest()
