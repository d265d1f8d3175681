"""Outscraper sandbox: the HTTP routes over the account (docs/outscraper.md).

* `GET /tasks` keyset pages (`lastId` exclusive, newest id first, `pageSize` 1..100 [I]; a
  bad `pageSize` is answered HTTP 200 with `{"errorMessage": ...}`, an error in a 2xx body),
  `GET/PUT/DELETE /tasks/{id}` (restart re-runs the task under its id with a new queue id and
  new files; terminate removes it: 404 afterwards [I]).
* Result files under `/files/{task_id}/{version}?sig=...` (pre-signed style, no key needed):
  JSON (flat or one array per query) or CSV; some are served as
  `application/octet-stream` without an extension, so a client must look at the content.
  A large CSV (`large_csv_mb`) is written to a temporary file once and served from an mmap.
* `GET /requests/{id}` (key optional, as documented): `Pending -> Success | Failure`; a
  `Success` older than `retention_hours` on the virtual clock reads `Pending` again with no
  data. `data` holds one array per query, or one flat array with `flat=true`.
  `GET /requests?type=finished|running&skip&pageSize`.
* Webhooks: with `webhook_url` (127.0.0.1 only), a finished task or request is POSTed there,
  signed `X-Hub-Signature-256: sha256=HMAC(api key, raw body)`.

The account's state machine is sandbox/outscraper_account.py, its records
sandbox/outscraper_data.py.
"""

from __future__ import annotations

from typing import Any

from scrapesync.sandbox.base import SandboxRequest, SandboxResponse
from scrapesync.sandbox.outscraper_account import OutscraperAccount
from scrapesync.sandbox.outscraper_data import DEFAULT_KEY, Task

__all__ = ["DEFAULT_KEY", "UNAUTHORIZED", "OutscraperAPI"]

UNAUTHORIZED = (
    "401 Unauthorized: The server could not verify that you are authorized to access the URL "
    "requested. You either supplied the wrong credentials (e.g. a bad password), or your "
    "browser doesn't understand how to supply the credentials required."
)
# how Flask-style APIs read a boolean query parameter
TRUE_VALUES = ("true", "1", "yes")


class OutscraperAPI(OutscraperAccount):
    """The account (`OutscraperAccount`: its options) served over Outscraper's routes."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.route("GET", r"/tasks", self.list_tasks)
        self.route("GET", r"/tasks/(?P<task_id>[^/]+)", self.get_task)
        self.route("PUT", r"/tasks/(?P<task_id>[^/]+)", self.restart_task)
        self.route("DELETE", r"/tasks/(?P<task_id>[^/]+)", self.terminate_task)
        self.route("GET", r"/requests", self.list_requests)
        self.route("GET", r"/requests/(?P<request_id>[^/]+)", self.get_request)
        self.route("GET", r"/files/(?P<task_id>[^/]+)/(?P<version>\d+)", self.get_file)

    def source_options(self, base_url: str) -> dict[str, Any]:
        options: dict[str, Any] = {"base_url": base_url, "api_key": self.api_keys[0]}
        if self.webhook_dir:
            options["webhook_dir"] = self.webhook_dir
        else:
            options["use_webhooks"] = False
        return options

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
            # unknown, running and expired all read the same
            # (docs/outscraper.md#request-states-and-retention)
            return SandboxResponse.json({"id": args["request_id"], "status": "Pending"})
        flat = (request.param("flat") or "").lower() in TRUE_VALUES
        return SandboxResponse.json(found.as_json(flat))

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
