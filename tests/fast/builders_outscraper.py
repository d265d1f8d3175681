"""Typed request and response builders for Outscraper's API (docs/outscraper.md).

In the style of Airbyte's RequestBuilder/ResponseBuilder: a test states the requests it expects
and the answers it serves with these, so what varies between tests is all that a test spells
out. Paths, parameters and bodies are written here as docs/outscraper.md describes them, not
read from the code's endpoint table: a wrong row in the table fails a test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from dlt.common.configuration.container import Container
from dlt.common.pipeline import StateInjectableContext
from dlt.common.storages.load_package import LoadPackageStateInjectableContext
from dlt.extract import DltSource
from dlt.extract.exceptions import ResourceExtractionError
from httpmock import HttpRequest, HttpResponse

from scrapesync.sources.common.errors import ProviderAPIError

Json = dict[str, Any]
API_KEY = "os_test_key"
# Werkzeug's 401 text, as Outscraper documents it for every endpoint
UNAUTHORIZED = (
    "401 Unauthorized: The server could not verify that you are authorized to access the URL "
    "requested. You either supplied the wrong credentials (e.g. a bad password), or your "
    "browser doesn't understand how to supply the credentials required."
)


def at(hour: int, day: int = 1) -> str:
    """`2025-01-<day>T<hh>:00:00.000001`: Outscraper's naive ISO form with microseconds."""
    return f"2025-01-{day:02d}T{hour:02d}:00:00.000001"


def task_id(number: int, hour: int = 0) -> str:
    """A task id as documented: `YYYYMMDDHHMMSS` plus 4 hex characters (sorts by creation)."""
    return f"20250101{hour:02d}0000{number:04x}"


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutscraperRequests:
    """The requests scrapesync sends to Outscraper, one constructor per endpoint."""

    @staticmethod
    def list_tasks(
        page_size: int = 100, last_id: str | None = None, query: str | None = None
    ) -> HttpRequest:
        params = {"pageSize": str(page_size)}
        if last_id is not None:
            params["lastId"] = last_id
        if query is not None:
            params["query"] = query
        return HttpRequest("/tasks", query=params, headers={"X-API-KEY": API_KEY})

    @staticmethod
    def get_task(task: str) -> HttpRequest:
        return HttpRequest(f"/tasks/{task}", query={}, headers={"X-API-KEY": API_KEY})

    @staticmethod
    def list_finished_requests(skip: int = 0, page_size: int = 100) -> HttpRequest:
        params = {"type": "finished", "skip": str(skip), "pageSize": str(page_size)}
        return HttpRequest("/requests", query=params, headers={"X-API-KEY": API_KEY})

    @staticmethod
    def get_request(request_id: str) -> HttpRequest:
        return HttpRequest(f"/requests/{request_id}", query={}, headers={"X-API-KEY": API_KEY})

    @staticmethod
    def result_file(path: str) -> HttpRequest:
        return HttpRequest(path)


# -- objects -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskBuilder:
    """A task as `GET /tasks/{taskId}` documents it; `file_path` is served by the test."""

    id: str
    status: str = "SUCCESS"
    created: str = field(default_factory=lambda: at(0))
    updated: str = field(default_factory=lambda: at(1))
    queue_task_id: str = "2b9aa187-281a-4d4e-a4c6-fbe941aaac34"
    file_path: str | None = None
    quantity: int = 2
    summary: bool = False
    extra: Json = field(default_factory=dict)

    def running(self) -> TaskBuilder:
        return replace(self, status="IN_PROGRESS", file_path=None)

    def with_file(self, path: str, quantity: int = 2) -> TaskBuilder:
        return replace(self, file_path=path, quantity=quantity)

    def created_at(self, moment: str) -> TaskBuilder:
        return replace(self, created=moment, updated=moment)

    def restarted(self, queue_task_id: str, path: str) -> TaskBuilder:
        return replace(self, queue_task_id=queue_task_id, file_path=path)

    def listed_as_summary(self) -> TaskBuilder:
        """The list form without `results` (the list's item shape is not documented)."""
        return replace(self, summary=True)

    def with_extra(self, **fields: Any) -> TaskBuilder:
        return replace(self, extra={**self.extra, **fields})

    def build(self, base_url: str) -> Json:
        task: Json = {
            "id": self.id,
            "user_id": "YOUR_USER_ID",
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "queue_task_id": self.queue_task_id,
            "metadata": {"service_name": "google_maps_service_v2", "queries": ["bars ny usa"]},
            **self.extra,
        }
        if not self.summary:
            main: Json = {"product_name": "Google Maps Data", "quantity": self.quantity}
            if self.file_path is not None:
                main["file_url"] = f"{base_url}{self.file_path}?X-Amz-Signature=abc"
            task["results"] = [main, {"product_name": "Domains", "quantity": self.quantity}]
        return task


# -- responses ---------------------------------------------------------------------------------


def task_page(tasks: Sequence[TaskBuilder], has_more: bool, base_url: str) -> HttpResponse:
    """One `GET /tasks` page: `{tasks, has_more}`."""
    return HttpResponse(json={"tasks": [t.build(base_url) for t in tasks], "has_more": has_more})


def task_answer(task: TaskBuilder, base_url: str) -> HttpResponse:
    return HttpResponse(json=task.build(base_url))


def request_list(*request_ids: str) -> HttpResponse:
    """A `GET /requests` page: a JSON list of `{id, status}`."""
    return HttpResponse(json=[{"id": rid, "status": "Success"} for rid in request_ids])


def request_answer(request_id: str, status: str, data: Any = None) -> HttpResponse:
    """`GET /requests/{id}`: `{id, status}` plus `data` once `Success`."""
    body: Json = {"id": request_id, "status": status}
    if data is not None:
        body["data"] = data
    return HttpResponse(json=body)


def outscraper_error(message: str | None, status: int = 200, flag: bool = True) -> HttpResponse:
    """Outscraper's error envelope `{"error": true, "errorMessage": ...}`, often with HTTP 200."""
    body: Json = {"error": True} if flag else {}
    if message is not None:
        body["errorMessage"] = message
    return HttpResponse(status=status, json=body)


def json_file(rows: Sequence[Json]) -> HttpResponse:
    return HttpResponse(json=list(rows))


def csv_file(text: str) -> HttpResponse:
    """A CSV result file as storage hosts serve it: octet-stream, no hint of its format."""
    return HttpResponse(body=text, headers={"Content-Type": "application/octet-stream"})


def place(number: int) -> Json:
    return {"name": f"Place {number}", "place_id": f"ChIJ{number:04d}", "rating": 4.5}


# -- running a source --------------------------------------------------------------------------


@dataclass
class Synced:
    """What one extraction of the source yielded, sorted by table (told apart by shape)."""

    tasks: list[Json] = field(default_factory=list)
    removed_tasks: list[Json] = field(default_factory=list)
    requests: list[Json] = field(default_factory=list)
    task_results: list[Json] = field(default_factory=list)
    request_results: list[Json] = field(default_factory=list)

    def add(self, item: Json | pa.Table) -> None:
        if isinstance(item, pa.Table):
            rows = item.to_pylist()
            target = self.task_results if "task_id" in item.column_names else self.request_results
            target.extend(rows)
        elif "removed" in item:
            self.tasks.append(item)
        elif "first_seen_at" in item:
            self.requests.append(item)
        else:
            self.removed_tasks.append(item)


class _PackageStorage:
    """Stands in for dlt's package storage: the source only reads the load id."""

    def get_load_package_state(self, _load_id: str) -> Json:
        return {}


def extract(source: DltSource, state: Json) -> Synced:
    """Iterate `source` with `state` as the pipeline state (kept: pass it to the next sync).

    The result resources stamp `_dlt_load_id` from the load package state, so one is injected
    too; no pipeline, no destination. dlt wraps what a resource raises in a
    `ResourceExtractionError`; the provider's own error is raised as it is.
    """
    package = LoadPackageStateInjectableContext(storage=_PackageStorage(), load_id="1700000000.1")  # type: ignore[arg-type]
    synced = Synced()
    with (
        Container().injectable_context(StateInjectableContext(state=state)),  # type: ignore[arg-type]
        Container().injectable_context(package),
    ):
        try:
            for item in _items(source):
                synced.add(item)
        except ResourceExtractionError as wrapped:
            if isinstance(wrapped.__cause__, ProviderAPIError):
                raise wrapped.__cause__ from None
            raise
    return synced


def _items(source: DltSource) -> Iterator[Any]:
    yield from source
