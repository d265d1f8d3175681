"""Collection: poll the journal's open jobs with bounded concurrency, download their results.

One request per job: `GET /v1/queries/{id}/results` answers 204 while the job is pending, 200
with every page (and the job object) once it is done or faulted, and 404 once the results
expired (docs/oxylabs.md#results). The body is parsed as a stream (ijson), page by page, so a
large raw HTML page is held once; at most `concurrency` jobs are in flight, so memory stays
bounded by `concurrency` x one job's pages whatever the number of jobs.

Jobs submitted with `storage_type`/`storage_url` are read from the bucket instead: the status
endpoint says when they are done, then `<bucket>/<job_id>.json` is streamed through dlt's
fsspec filesystem support (a local directory works as the bucket).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any

import ijson
import orjson
from dlt.common import logger
from dlt.common.configuration import resolve_configuration
from dlt.common.storages.configuration import FilesystemConfiguration
from dlt.common.storages.fsspec_filesystem import fsspec_from_config

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError, malformed_item
from scrapesync.sources.oxylabs.settings import (
    FAULT_CODES,
    JOB_PATH,
    JOB_STATUSES,
    RESULTS_PATH,
)
from scrapesync.sources.oxylabs.transform import fault_reason, result_row

RESULT_TYPES = ("auto", "raw", "parsed")


@dataclass
class Outcome:
    """What one poll of one job found."""

    job: dict[str, Any]
    status: str  # pending | done | faulted | expired
    pages: list[dict[str, Any]] = field(default_factory=list)
    fault_code: int | None = None
    fault_reason: str | None = None
    finished_at: str | None = None


def stream_results(
    stream: IO[bytes], path: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Pages (`results[*]`) and the `job` object of a results body, parsed incrementally."""
    try:
        return _parse_results(stream)
    except ijson.JSONError as exc:  # an HTML error page answered with 200, a cut-off body
        detail = f"the results are not JSON ({str(exc).splitlines()[0]})"
        raise malformed_item("oxylabs", path, detail) from None


def _parse_results(stream: IO[bytes]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    pages: list[dict[str, Any]] = []
    job: dict[str, Any] | None = None
    builder: Any = None
    target = ""
    for prefix, event, value in ijson.parse(stream, use_float=True):
        if builder is None:
            if event == "start_map" and prefix in ("results.item", "job"):
                builder, target = ijson.ObjectBuilder(), prefix
                builder.event(event, value)
            continue
        builder.event(event, value)
        if event == "end_map" and prefix == target:
            if target == "job":
                job = builder.value
            else:
                pages.append(builder.value)
            builder = None
    return pages, job


class Collector:
    """Polls jobs concurrently; `poll` yields an `Outcome` per job in completion order."""

    def __init__(
        self,
        client: ProviderRESTClient,
        concurrency: int,
        result_type: str = "auto",
        storage_bucket_url: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("oxylabs: `concurrency` must be >= 1")
        if result_type not in RESULT_TYPES:
            raise ValueError(f"oxylabs: `result_type` must be one of {RESULT_TYPES}")
        self.client = client
        self.concurrency = concurrency
        self.result_type = result_type
        self.storage_bucket_url = storage_bucket_url
        self._fs: dict[str, tuple[Any, str]] = {}

    def poll(self, jobs: Iterable[dict[str, Any]]) -> Iterator[Outcome]:
        todo = iter(jobs)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="oxylabs-poll") as pool:
            inflight: set[Future[Outcome]] = {
                pool.submit(self.fetch, job) for job in islice(todo, self.concurrency * 2)
            }
            while inflight:
                finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
                    following = next(todo, None)
                    if following is not None:
                        inflight.add(pool.submit(self.fetch, following))

    def fetch(self, job: dict[str, Any]) -> Outcome:
        params = orjson.loads(job["params"] or "{}")
        if params.get("storage_type") and params.get("storage_url"):
            return self._from_storage(job, params)
        query: dict[str, str] = {}
        kind = self._result_type(params)
        if kind:
            query["type"] = kind
        try:
            path = RESULTS_PATH.format(job_id=job["job_id"])
            response = self.client.get(path, params=query, stream=True)
        except ProviderAPIError as exc:
            if exc.status == 404:
                return Outcome(job, "expired", fault_reason=exc.detail)
            raise
        with response:
            if response.status_code == 204:
                return Outcome(job, "pending")
            response.raw.decode_content = True
            pages, info = stream_results(response.raw, path)  # type: ignore[arg-type]
        return self._outcome(job, pages, info)

    def _result_type(self, params: dict[str, Any]) -> str | None:
        if self.result_type != "auto":
            return self.result_type
        if "parse" not in params:
            return None  # Scheduler jobs: the API's default for the job's own settings
        return "parsed" if params.get("parse") else "raw"

    def _outcome(
        self, job: dict[str, Any], pages: list[dict[str, Any]], info: dict[str, Any] | None
    ) -> Outcome:
        status = (info or {}).get("status")
        codes = [page.get("status_code") for page in pages]
        if status is None:  # no job object in the body: the target codes tell a failure
            status = "faulted" if set(FAULT_CODES) & set(codes) else "done"
        finished = (info or {}).get("updated_at") or (pages[0].get("updated_at") if pages else None)
        if status == "faulted":
            code = next((c for c in codes if c in FAULT_CODES), None)
            content = pages[0].get("content") if pages else None
            parse_code = content.get("parse_status_code") if isinstance(content, dict) else None
            reason = fault_reason(code, parse_code, codes)
            return Outcome(job, "faulted", [], code or parse_code, reason, finished)
        if status not in JOB_STATUSES:
            logger.warning(
                f"oxylabs: job {job['job_id']} has undocumented status {status!r}: "
                "taken as pending and polled again next sync"
            )
            status = "pending"
        if status == "pending":
            return Outcome(job, "pending")
        rows = [result_row(job, page, index) for index, page in enumerate(pages, 1)]
        return Outcome(job, "done", rows, finished_at=finished)

    def _from_storage(self, job: dict[str, Any], params: dict[str, Any]) -> Outcome:
        response = self.client.get(JOB_PATH.format(job_id=job["job_id"]))
        info = response.json()
        status = info.get("status")
        if status != "done":
            if status == "faulted":
                return self._outcome(job, [], info)
            return Outcome(job, "pending")
        fs, root = self._filesystem(params["storage_url"])
        path = f"{root.rstrip('/')}/{job['job_id']}.json"
        if not fs.exists(path):
            # the upload can land after the status turns done: try again next poll
            logger.info(f"oxylabs: job {job['job_id']} is done, {path} not uploaded yet")
            return Outcome(job, "pending")
        with fs.open(path, "rb") as handle:
            pages, _ = stream_results(handle, path)
        return self._outcome(job, pages, info)

    def _filesystem(self, storage_url: str) -> tuple[Any, str]:
        bucket = self.storage_bucket_url or _bucket_url(storage_url)
        if bucket not in self._fs:
            # credentials resolve the dlt way: [sources.oxylabs.credentials] or env
            config = resolve_configuration(
                FilesystemConfiguration(bucket_url=bucket), sections=("sources", "oxylabs")
            )
            self._fs[bucket] = fsspec_from_config(config)
        return self._fs[bucket]


def _bucket_url(storage_url: str) -> str:
    """`s3://bucket/path` stays; a bare `bucket/path` of `storage_type` s3 gets its scheme."""
    return storage_url if "://" in storage_url else f"s3://{storage_url}"
