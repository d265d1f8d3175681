"""The Outscraper sandbox's account: its state machine on a virtual clock.

Tasks move `PENDING -> IN_PROGRESS -> SUCCESS` (or `FAILURE`) one step per `advance()` (one
virtual hour); each step also creates a task and an async request, and with `churn_every`
restarts a finished task and terminates one. Requests move `Pending -> Success | Failure` and
read `Pending` again after `retention_hours`. Finished tasks and requests are announced by
signed webhooks. The records are built by sandbox/outscraper_data.py; the HTTP routes that
serve them are in sandbox/outscraper.py.
"""

from __future__ import annotations

import random
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from scrapesync.sandbox.base import ProviderAPI
from scrapesync.sandbox.outscraper_data import (
    DEFAULT_KEY,
    EPOCH,
    FORMATS,
    STEP,
    AsyncRequest,
    Task,
    file_chunks,
    large_csv,
    place_row,
    sign,
    task_file_rows,
    webhook_body,
)


class OutscraperAccount(ProviderAPI):
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

    # -- state machine ------------------------------------------------------------------
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
                [place_row(request.id, query, i) for i in range(request.rows_per_query)]
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

    # -- records ------------------------------------------------------------------------
    def file_rows(self, task: Task) -> list[dict[str, Any]]:
        return task_file_rows(task)

    def file_body(self, task: Task) -> Any:
        key = (task.id, task.version)
        if key not in self._files:
            self._files[key] = b"".join(file_chunks(task, self.file_rows(task)))
        return self._files[key]

    def _write_large_csv(self, task: Task, megabytes: float) -> None:
        """A CSV of about `megabytes` MB in a temporary file, served from an mmap."""
        self._large, self._files[(task.id, task.version)], task.rows = large_csv(task, megabytes)

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

    # -- webhooks -------------------------------------------------------------------------
    def webhook_body(self, object_id: str, status: str, api_task: bool) -> bytes:
        return webhook_body(object_id, status, api_task)

    def sign(self, body: bytes) -> str:
        return sign(self.api_keys[0], body)

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
