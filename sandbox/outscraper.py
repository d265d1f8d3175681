"""Outscraper sandbox: tasks, result files, async requests and webhooks (api-notes §3.7).

* `GET /tasks` keyset pages (`lastId` exclusive, newest id first, `pageSize` 1..100 [I]; a
  bad `pageSize` is answered HTTP 200 with `{"errorMessage": ...}`, an error in a 2xx body),
  `GET/PUT/DELETE /tasks/{id}` (restart re-runs the task under its id with a new queue id and
  new files; terminate removes it: 404 afterwards [I]).
* Tasks move `PENDING -> IN_PROGRESS -> SUCCESS` (or `FAILURE`) one step per `advance()`
  (one virtual hour); each step also creates a task and an async request, and with
  `churn_every` restarts a finished task and terminates one (updates and deletes to sync).
* Result files under `/files/{task_id}/{version}?sig=...` (pre-signed style, no key needed):
  JSON (flat or one array per query) or CSV; some are served as
  `application/octet-stream` without an extension, so a client must look at the content.
  A large CSV (`large_csv_mb`) is written to a temporary file once and served from an mmap.
* `GET /requests/{id}` (key optional, as documented): `Pending -> Success | Failure`; a
  `Success` older than `retention_hours` on the virtual clock reads `Pending` again with no
  data. `GET /requests?type=finished|running&skip&pageSize`.
* Webhooks: with `webhook_url` (127.0.0.1 only), a finished task or request is POSTed there,
  signed `X-Hub-Signature-256: sha256=HMAC(api key, raw body)`.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import mmap
import random
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson

from scrapesync.sandbox.base import ProviderAPI, SandboxRequest, SandboxResponse

DEFAULT_KEY = "os_sandbox_key"
EPOCH = datetime(2025, 1, 1)
STEP = timedelta(hours=1)
UNAUTHORIZED = (
    "401 Unauthorized: The server could not verify that you are authorized to access the URL "
    "requested. You either supplied the wrong credentials (e.g. a bad password), or your "
    "browser doesn't understand how to supply the credentials required."
)
FORMATS = ("json", "csv", "json-nested", "csv-octet")
CSV_COLUMNS = ("query", "name", "place_id", "rating", "reviews", "phone", "full_address", "site")


def _ts(moment: datetime) -> str:
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
            "created": _ts(self.created),
            "updated": _ts(self.updated),
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


class OutscraperAPI(ProviderAPI):
    """Deterministic, evolving Outscraper account.

    Args:
        tasks: tasks before the first sync (formats cycle through json, csv, nested JSON and
            CSV served as octet-stream; the last two are still running).
        rows_per_task: rows in each result file.
        requests: async requests before the first sync (the last one still Pending).
        large_csv_mb: add one finished task whose CSV file is about this many MB.
        webhook_url: where finished tasks and requests are announced (127.0.0.1 only).
        retention_hours: how long a request's results stay readable.
        seed: seed of the deterministic generator.
        api_keys: accepted `X-API-KEY` values; the first one signs webhooks.
        churn_every: every this many steps, restart one finished task and terminate one task
            that was finished before the first step (0: never). Only those are terminated, so
            a sync made before the first step has loaded every task that is later removed and
            `truth()` can state what the destination keeps of it.
    """

    name = "outscraper"

    def __init__(
        self,
        tasks: int = 6,
        rows_per_task: int = 40,
        requests: int = 3,
        large_csv_mb: float = 0,
        webhook_url: str | None = None,
        webhook_dir: str | None = None,
        retention_hours: float = 4,
        seed: int = 11,
        api_keys: tuple[str, ...] = (DEFAULT_KEY,),
        churn_every: int = 0,
    ) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.api_keys = list(api_keys)
        self.clock = EPOCH
        self.rows_per_task = rows_per_task
        self.retention = timedelta(hours=retention_hours)
        self.webhook_url = webhook_url
        self.webhook_dir = webhook_dir
        self.deliveries: list[tuple[bytes, dict[str, str], int]] = []
        self.error_in_200: str | None = None
        self.tasks: dict[str, Task] = {}
        self.removed: set[str] = set()
        self.graveyard: dict[str, Task] = {}  # terminated tasks as they were at the end
        self.churn_every = churn_every
        self.steps = 0
        self.requests: dict[str, AsyncRequest] = {}
        self._counter = 0
        self._files: dict[tuple[str, int], Any] = {}
        for index in range(tasks):
            done = index < tasks - 2
            task = self.create_task(at=self.clock - timedelta(hours=tasks - index))
            task.status = (
                "SUCCESS" if done else ("IN_PROGRESS" if index == tasks - 2 else "PENDING")
            )
        self.large_task: str | None = None  # its rows are not `file_rows` (`_write_large_csv`)
        if large_csv_mb:
            big = self.create_task(fmt="csv")
            big.status = "SUCCESS"
            self._write_large_csv(big, large_csv_mb)
            self.large_task = big.id
        self.done_at_start = {t.id for t in self.tasks.values() if t.status == "SUCCESS"}
        for index in range(requests):
            request = self.create_request()
            if index < requests - 1:
                self._finish_request(request, notify=False)
        self.route("GET", r"/tasks", self.list_tasks)
        self.route("GET", r"/tasks/(?P<task_id>[^/]+)", self.get_task)
        self.route("PUT", r"/tasks/(?P<task_id>[^/]+)", self.restart_task)
        self.route("DELETE", r"/tasks/(?P<task_id>[^/]+)", self.terminate_task)
        self.route("GET", r"/requests", self.list_requests)
        self.route("GET", r"/requests/(?P<request_id>[^/]+)", self.get_request)
        self.route("GET", r"/files/(?P<task_id>[^/]+)/(?P<version>\d+)", self.get_file)

    # -- data ---------------------------------------------------------------------------
    def create_task(
        self, at: datetime | None = None, fmt: str | None = None, tags: list[str] | None = None
    ) -> Task:
        moment = at or self.clock
        self._counter += 1
        task_id = f"{moment:%Y%m%d%H%M%S}{self._counter:04x}"
        task = Task(
            id=task_id,
            created=moment,
            updated=moment,
            fmt=fmt or FORMATS[self._counter % len(FORMATS)],
            rows=self.rows_per_task,
            queries=[f"restaurants {city} usa" for city in ("ny", "la")],
            tags=tags or [f"batch-{self._counter % 2}"],
            queue_task_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
        )
        self.tasks[task_id] = task
        return task

    def finish_task(self, task_id: str, rows: int | None = None) -> Task:
        task = self.tasks[task_id]
        task.status = "FAILURE" if task.fail else "SUCCESS"
        task.rows = task.rows if rows is None else rows
        task.updated = self.clock
        self._notify(task.id, task.status, api_task=False)
        return task

    def restart(self, task_id: str, rows: int | None = None) -> Task:
        """What `PUT /tasks/{id}` does: same id, new queue id, results produced again."""
        task = self.tasks[task_id]
        task.status, task.version, task.updated = "PENDING", task.version + 1, self.clock
        task.queue_task_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        task.rows = max(1, task.rows - 7) if rows is None else rows
        return task

    def terminate(self, task_id: str) -> None:
        self.graveyard[task_id] = self.tasks.pop(task_id)
        self.removed.add(task_id)

    def create_request(self, queries: int = 2, rows: int = 5) -> AsyncRequest:
        request_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        request = AsyncRequest(request_id, [f"cafes city-{i}" for i in range(queries)], rows)
        self.requests[request_id] = request
        return request

    def _finish_request(self, request: AsyncRequest, notify: bool = True) -> None:
        request.status = "Failure" if request.fail else "Success"
        request.finished_at = self.clock
        if not request.fail:
            request.data = [
                [self._row(request.id, query, i) for i in range(request.rows_per_query)]
                for query in request.queries
            ]
        if notify:
            self._notify(request.id, request.status.upper(), api_task=True)

    def finish_request(self, request_id: str) -> None:
        self._finish_request(self.requests[request_id])

    def readable(self, request: AsyncRequest) -> bool:
        """Results still available (finished less than `retention` ago)."""
        return bool(request.finished_at and self.clock - request.finished_at < self.retention)

    def advance(self) -> dict[str, int]:
        """One virtual hour: running tasks and requests move on, one new of each."""
        self.clock += STEP
        self.steps += 1
        counts = {"tasks finished": 0, "tasks created": 0, "requests finished": 0}
        if self.churn_every and self.steps % self.churn_every == 0:
            # first, so a task restarted now starts running now and finishes next step
            counts.update(self._churn())
        for task in list(self.tasks.values()):
            if task.status == "PENDING":
                task.status, task.updated = "IN_PROGRESS", self.clock
            elif task.status == "IN_PROGRESS":
                self.finish_task(task.id)
                counts["tasks finished"] += 1
        for request in list(self.requests.values()):
            if request.status == "Pending" and request.finished_at is None:
                self._finish_request(request)
                counts["requests finished"] += 1
        self.create_task()
        self.create_request()
        counts["tasks created"] = 1
        return counts

    def _churn(self) -> dict[str, int]:
        """Restart one finished task; terminate one finished before the first step."""
        counts = {"tasks restarted": 0, "tasks terminated": 0}
        done = sorted(t.id for t in self.tasks.values() if t.status == "SUCCESS")
        # never restarted: its one delivery (version 1) is what a destination keeps of it
        first = [t for t in done if t in self.done_at_start and self.tasks[t].version == 1]
        if first:
            victim = self.rng.choice(first)
            self.terminate(victim)
            done.remove(victim)
            counts["tasks terminated"] = 1
        if done:
            self.restart(self.rng.choice(done))
            counts["tasks restarted"] = 1
        return counts

    def _row(self, owner: str, query: str, index: int) -> dict[str, Any]:
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

    def file_rows(self, task: Task) -> list[dict[str, Any]]:
        per_query = -(-task.rows // len(task.queries))
        rows = [
            self._row(f"{task.id}/{task.version}", query, i)
            for query in task.queries
            for i in range(per_query)
        ]
        return rows[: task.rows]

    def file_body(self, task: Task) -> Any:
        key = (task.id, task.version)
        if key not in self._files:
            self._files[key] = b"".join(self._chunks(task, self.file_rows(task)))
        return self._files[key]

    def _chunks(self, task: Task, rows: list[dict[str, Any]]) -> Iterator[bytes]:
        if task.fmt.startswith("csv"):
            yield from _csv_chunks(rows)
        elif task.fmt == "json-nested":
            groups = [[r for r in rows if r["query"] == q] for q in task.queries]
            yield b"[" + b",".join(orjson.dumps(group) for group in groups) + b"]"
        else:
            yield b"[\n" + b",\n".join(orjson.dumps(row) for row in rows) + b"\n]"

    def _write_large_csv(self, task: Task, megabytes: float) -> None:
        """A CSV of about `megabytes` MB in a temporary file, served from an mmap."""
        target = int(megabytes * 1_000_000)
        handle = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the sandbox)
        written = rows = 0
        block = [self._row(task.id, task.queries[0], i) for i in range(1000)]
        header = True
        while written < target:
            chunk = b"".join(_csv_chunks(block, header=header))
            header = False
            handle.write(chunk)
            written += len(chunk)
            rows += len(block)
        handle.flush()
        task.rows = rows
        self._files[(task.id, task.version)] = mmap.mmap(
            handle.fileno(), 0, access=mmap.ACCESS_READ
        )
        self._large = handle

    def truth(self) -> dict[str, Any]:
        """Tasks, their result rows and requests as a sync must find them.

        `task_results` and `request_results` are row identities: (task id, file index, row
        number, place id) and (request id, query index, row index, place id); place ids hash
        the task's version, so rows of an earlier run differ. A restarted task that has not
        finished again keeps the rows of the run a sync last saw, which only the syncs know:
        it is in `unsettled_results`, as is a removed task whose delivered rows are unknown
        and the large CSV task (counted by `expected_rows` instead).
        """
        live = [t for t in self._finished() if t.id != self.large_task]
        kept = [
            task
            for task_id, task in self.graveyard.items()
            if task_id in self.done_at_start and task.version == 1
        ]
        unsettled = {t.id for t in self.tasks.values() if t.version > 1 and t.status != "SUCCESS"}
        unsettled |= self.removed - {task.id for task in kept}
        if self.large_task:
            unsettled.add(self.large_task)
        return {
            "tasks": {task.id: task.status for task in self.tasks.values()},
            "removed": set(self.removed),
            "task_rows": {task.id: task.rows for task in self._finished()},
            # the file is the first of a task's results (`Task.as_json`): file index 0
            "task_results": {
                (task.id, 0, number, row["place_id"])
                for task in live + kept
                for number, row in enumerate(self.file_rows(task))
            },
            "unsettled_results": unsettled,
            "requests": {r.id: r.status for r in self.requests.values()},
            "request_results": {
                (r.id, query_index, row_index, row["place_id"])
                for r in self.requests.values()
                for query_index, rows in enumerate(r.data)
                for row_index, row in enumerate(rows)
            },
        }

    def _finished(self) -> list[Task]:
        return [task for task in self.tasks.values() if task.status == "SUCCESS"]

    def expected_rows(self) -> dict[str, int]:
        collected = [r for r in self.requests.values() if r.status == "Success"]
        return {
            "tasks": len(self.tasks),
            "task_results": sum(task.rows for task in self._finished()),
            "request_results": sum(len(r.queries) * r.rows_per_query for r in collected),
        }

    def source_options(self, base_url: str) -> dict[str, Any]:
        options: dict[str, Any] = {"base_url": base_url, "api_key": self.api_keys[0]}
        if self.webhook_dir:
            options["webhook_dir"] = self.webhook_dir
        else:
            options["use_webhooks"] = False
        return options

    # -- webhooks -------------------------------------------------------------------------
    def webhook_body(self, object_id: str, status: str, api_task: bool) -> bytes:
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

    def sign(self, body: bytes) -> str:
        key = self.api_keys[0].encode()
        return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()

    def deliver(self, body: bytes, signature: str | None) -> int:
        """POST one webhook to `webhook_url`; returns the HTTP status (0: not delivered)."""
        if not self.webhook_url or urlsplit(self.webhook_url).hostname not in ("127.0.0.1",):
            return 0
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        request = urllib.request.Request(self.webhook_url, body, headers, method="POST")
        try:
            with urllib.request.urlopen(
                request, timeout=5
            ) as answer:  # only 127.0.0.1 (checked above)
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        self.deliveries.append((body, headers, status))
        return status

    def _notify(self, object_id: str, status: str, api_task: bool) -> None:
        body = self.webhook_body(object_id, status, api_task)
        self.deliver(body, self.sign(body))

    # -- HTTP -----------------------------------------------------------------------------
    def error(self, status: int, message: str, **extra: Any) -> SandboxResponse:
        return SandboxResponse.json({"error": True, "errorMessage": message, **extra}, status)

    def _denied(self, request: SandboxRequest) -> SandboxResponse | None:
        if request.header("x-api-key") not in self.api_keys:
            return self.error(401, UNAUTHORIZED)
        if self.error_in_200:
            return self.error(200, self.error_in_200)
        return None

    def list_tasks(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        denied = self._denied(request)
        if denied:
            return denied
        try:
            size = int(request.param("pageSize", "10") or 10)
        except ValueError:
            size = 0
        if not 1 <= size <= 100:
            return SandboxResponse.json({"errorMessage": "pageSize must be between 1 and 100"})
        last, tag = request.param("lastId"), request.param("query")
        ordered = sorted(self.tasks, reverse=True)
        matching = [
            task_id
            for task_id in ordered
            if (not last or task_id < last) and (not tag or tag in self.tasks[task_id].tags)
        ]
        page = [self.tasks[task_id].as_json(request.base_url) for task_id in matching[:size]]
        return SandboxResponse.json({"tasks": page, "has_more": len(matching) > size})

    def _task(self, request: SandboxRequest, task_id: str) -> Task | SandboxResponse:
        denied = self._denied(request)
        if denied:
            return denied
        task = self.tasks.get(task_id)
        return task if task else self.error(404, "Task not found")

    def get_task(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        task = self._task(request, args["task_id"])
        if isinstance(task, SandboxResponse):
            return task
        return SandboxResponse.json(task.as_json(request.base_url))

    def restart_task(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        task = self._task(request, args["task_id"])
        if isinstance(task, SandboxResponse):
            return task
        self.restart(task.id)
        return SandboxResponse.json("Task restarted")

    def terminate_task(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        task = self._task(request, args["task_id"])
        if isinstance(task, SandboxResponse):
            return task
        self.terminate(task.id)
        return SandboxResponse.json("Task removed")

    def list_requests(self, request: SandboxRequest, _: dict[str, str]) -> SandboxResponse:
        denied = self._denied(request)
        if denied:
            return denied
        kind = request.param("type")
        skip = int(request.param("skip", "0") or 0)
        size = min(100, int(request.param("pageSize", "25") or 25))
        found = [
            {"id": r.id, "status": r.status if r.finished_at else "Pending"}
            for r in self.requests.values()
            if kind is None or (kind == "finished") == (r.finished_at is not None)
        ]
        return SandboxResponse.json(found[skip : skip + size])

    def get_request(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        key = request.header("x-api-key")
        if key is not None and key not in self.api_keys:
            return self.error(401, UNAUTHORIZED)
        if self.error_in_200:
            return self.error(200, self.error_in_200)
        found = self.requests.get(args["request_id"])
        if found is None or found.finished_at is None or not self.readable(found):
            # unknown, running and expired all read the same (api-notes §3.3)
            return SandboxResponse.json({"id": args["request_id"], "status": "Pending"})
        return SandboxResponse.json({"id": found.id, "status": found.status, "data": found.data})

    def get_file(self, request: SandboxRequest, args: dict[str, str]) -> SandboxResponse:
        task = self.tasks.get(args["task_id"])
        if task is None or str(task.version) != args["version"] or task.status != "SUCCESS":
            return SandboxResponse(404, b"<Error><Code>NoSuchKey</Code></Error>")
        if request.param("sig") != task.queue_task_id[:8]:
            return SandboxResponse(403, b"<Error><Code>AccessDenied</Code></Error>")
        content_type = {
            "json": "application/json",
            "json-nested": "application/json",
            "csv": "text/csv; charset=utf-8",
        }.get(task.fmt, "application/octet-stream")
        return SandboxResponse(200, self.file_body(task), {"Content-Type": content_type})


def _csv_chunks(rows: list[dict[str, Any]], header: bool = True) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow([*CSV_COLUMNS, "working_hours.Monday"])
    for row in rows:
        writer.writerow([*(row[name] for name in CSV_COLUMNS), row["working_hours"]["Monday"]])
    yield buffer.getvalue().encode()
