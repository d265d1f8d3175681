"""Typed request and response builders for Scrapewise's documented pages (docs/scrapewise.md).

In the style of Airbyte's RequestBuilder/ResponseBuilder: a test says what differs from the
documented default (`LoadHistoryRequest().page(1)`, `RunBuilder.completed(1).with_errors(2)`)
and the builder spells out the rest exactly as the source sends it or Scrapewise answers it.
Paths and defaults come from `sources/scrapewise/settings.py`, so the builders cannot drift
from the endpoint table.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import orjson
from httpmock import HttpRequest, HttpResponse

from scrapesync.sources.scrapewise.settings import (
    DEFAULT_PAGE_SIZE,
    DELETE_DATA,
    GROUP_DATA,
    GROUP_LIST,
    HISTORY_SORT,
    JOB_ERRORS,
    LOAD_HISTORY,
    MERGE,
    PREVIEW_DELETE,
    ROWS_SORT,
    RUN_ROW_FIELD,
    SCRAPER,
    SCRAPER_LIST,
)

API_KEY = "sw_live_test.0123456789abcdef"
GROUP = "65a3b1c8d4e7f291a3b5c6d8"
SCRAPER_ID = "65a3b1c8d4e7f291a3b5c6d9"


def oid(number: int) -> str:
    """A MongoDB ObjectId (24 hex characters) that sorts with `number`."""
    return f"{number:024x}"


# -- responses --------------------------------------------------------------------------------
class RunBuilder:
    """One `ScraperJobStatusDTO` of `load-history` (jobs page example plus the SDK's fields)."""

    def __init__(self, number: int, state: str) -> None:
        self._run: dict[str, Any] = {
            "id": oid(number),
            "jobId": oid(number),
            "scraperId": SCRAPER_ID,
            "groupId": GROUP,
            "state": state,
            "started": f"2026-05-19T{number % 24:02d}:00:00Z",
            "finished": None,
            "successLinks": 0,
            "errorLinks": 0,
            "itemsQuantity": 0,
            "launchedByCustomer": True,
        }

    @classmethod
    def completed(cls, number: int) -> RunBuilder:
        return cls(number, "COMPLETED").finished(f"2026-05-19T{number % 24:02d}:05:23Z")

    @classmethod
    def running(cls, number: int) -> RunBuilder:
        return cls(number, "RUNNING")

    def finished(self, moment: str | None) -> RunBuilder:
        self._run["finished"] = moment
        return self

    def started(self, moment: str | None) -> RunBuilder:
        self._run["started"] = moment
        return self

    def with_items(self, count: int) -> RunBuilder:
        self._run.update(successLinks=count, itemsQuantity=count)
        return self

    def with_errors(self, count: int) -> RunBuilder:
        self._run["errorLinks"] = count
        return self

    def with_field(self, name: str, value: Any) -> RunBuilder:
        self._run[name] = value
        return self

    def without(self, name: str) -> RunBuilder:
        self._run.pop(name, None)
        return self

    def build(self) -> dict[str, Any]:
        return copy.deepcopy(self._run)


class SpringPageResponse:
    """A Spring `Page<T>`: `content` plus `totalElements`, `totalPages`, `size`, `number`."""

    def __init__(self, content: Sequence[dict[str, Any]], size: int = DEFAULT_PAGE_SIZE) -> None:
        self._content = [dict(item) for item in content]
        self._size = size
        self._number = 0
        self._total_elements = len(self._content)
        self._total_pages = 1 if self._content else 0

    def page(self, number: int) -> SpringPageResponse:
        self._number = number
        return self

    def totals(self, elements: int, pages: int) -> SpringPageResponse:
        self._total_elements, self._total_pages = elements, pages
        return self

    def build(self) -> HttpResponse:
        return HttpResponse(
            json={
                "content": self._content,
                "totalElements": self._total_elements,
                "totalPages": self._total_pages,
                "size": self._size,
                "number": self._number,
            }
        )


class ErrorResponse:
    """The RFC 7807 envelope Scrapewise answers errors with (docs/scrapewise.md#errors)."""

    def __init__(self, status: int, detail: str, path: str = LOAD_HISTORY.path) -> None:
        self._status = status
        self._body: dict[str, Any] = {
            "type": "https://scrapewise.ai/errors/bad-request",
            "title": "Bad Request",
            "status": status,
            "detail": detail,
            "instance": "/api/scraper-api" + path,
        }

    def with_code(self, code: str) -> ErrorResponse:
        self._body["code"] = code
        return self

    def with_correlation(self, correlation_id: str) -> ErrorResponse:
        self._body["correlationId"] = correlation_id
        return self

    def build(self) -> HttpResponse:
        return HttpResponse(status=self._status, json=self._body)


def json_list(items: Sequence[dict[str, Any]]) -> HttpResponse:
    """The bare JSON arrays of `group/list`, `scraper/list` and the failed-links list."""
    return HttpResponse(json=list(items))


# -- requests ---------------------------------------------------------------------------------
class LoadHistoryRequest:
    """`GET /api/scraper/load-history` exactly as the `jobs` resource sends it."""

    def __init__(self) -> None:
        self._query: dict[str, str] = {
            "page": "0",
            "size": str(DEFAULT_PAGE_SIZE),
            "sort": HISTORY_SORT,
            "withDeleted": "false",
        }

    def page(self, number: int) -> LoadHistoryRequest:
        self._query["page"] = str(number)
        return self

    def size(self, size: int) -> LoadHistoryRequest:
        self._query["size"] = str(size)
        return self

    def scope(self, **filters: str) -> LoadHistoryRequest:
        self._query["filters"] = orjson.dumps(filters, option=orjson.OPT_SORT_KEYS).decode()
        return self

    def with_deleted(self) -> LoadHistoryRequest:
        self._query["withDeleted"] = "true"
        return self

    def build(self) -> HttpRequest:
        return HttpRequest(LOAD_HISTORY.path, query=dict(self._query))


class GroupDataRequest:
    """`GET /api/scraper/data/group/{id}`: one run's rows (filtered, stably sorted) by default."""

    def __init__(self, group_id: str = GROUP) -> None:
        self._path = GROUP_DATA.url_path(group_id=group_id)
        self._query: dict[str, str | list[str]] = {
            "page": "0",
            "size": str(DEFAULT_PAGE_SIZE),
            "sort": list(ROWS_SORT),
        }

    def of_run(self, run_id: str) -> GroupDataRequest:
        self._query["filters"] = orjson.dumps({RUN_ROW_FIELD: run_id}).decode()
        return self

    def sorted_by(self, *sort: str) -> GroupDataRequest:
        self._query["sort"] = list(sort)
        return self

    def page(self, number: int) -> GroupDataRequest:
        self._query["page"] = str(number)
        return self

    def build(self) -> HttpRequest:
        return HttpRequest(self._path, query=dict(self._query))


def job_errors_request(run_id: str, group_id: str = GROUP) -> HttpRequest:
    return HttpRequest(JOB_ERRORS.url_path(group_id=group_id, job_id=run_id), query={})


def scraper_list_request(group_id: str | None = None) -> HttpRequest:
    return HttpRequest(SCRAPER_LIST.path, query={"groupId": group_id} if group_id else {})


def scraper_request(scraper_id: str = SCRAPER_ID) -> HttpRequest:
    return HttpRequest(SCRAPER.url_path(scraper_id=scraper_id), query={})


def group_list_request() -> HttpRequest:
    return HttpRequest(GROUP_LIST.path, query={})


def merge_request(job_ids: Sequence[str], key: str, group_id: str = GROUP) -> HttpRequest:
    return HttpRequest(
        MERGE.url_path(group_id=group_id),
        query={"scraperJobStatusIds": list(job_ids)},
        headers={"Idempotency-Key": key},
    )


def preview_delete_request(job_id: str) -> HttpRequest:
    return HttpRequest(PREVIEW_DELETE.path, query={"scraperJobStatusId": job_id})


def delete_data_request(job_id: str, token: str, key: str) -> HttpRequest:
    return HttpRequest(
        DELETE_DATA.path,
        query={"scraperJobStatusId": job_id, "token": token},
        headers={"Idempotency-Key": key},
    )
