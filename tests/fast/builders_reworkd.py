"""Typed request and response builders for Reworkd's outputs API (docs/reworkd.md).

In the style of Airbyte's RequestBuilder/ResponseBuilder: a test states the requests it expects
and the pages it serves with these, so what varies between tests is all that a test spells
out. Paths, parameters and bodies are written here as docs/reworkd.md describes them, not read
from the code's endpoint table: a wrong row in the table fails a test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext, StateInjectableContext
from dlt.common.schema.typing import TTableSchema
from dlt.common.storages.load_package import LoadPackageStateInjectableContext
from dlt.extract import DltResource, DltSource
from dlt.extract.exceptions import ResourceExtractionError
from dlt.extract.hints import HintsMeta, TableNameMeta
from dlt.extract.items_transform import MapItem
from httpmock import BASE_URL, HttpRequest, HttpResponse

Json = dict[str, Any]
GROUP = "g-alpha"
LOAD_ID = "1700000000.1"


def at(minute: int, hour: int = 0, day: int = 1) -> str:
    """`2025-01-<day>T<hh>:<mm>:00`: a time in Reworkd's form (ISO 8601, no zone)."""
    return f"2025-01-{day:02d}T{hour:02d}:{minute:02d}:00"


def md5ish(text: str) -> str:
    """A 32-character hex-looking hash (the docs' `key_hash` / `value_hash` form)."""
    return (text.encode().hex() * 32)[:32]


T0 = at(0)


# -- requests ----------------------------------------------------------------------------------


def outputs_request(
    group_id: str = GROUP,
    *,
    limit: int = 1000,
    cursor: int | None = None,
    created_after: str | None = None,
    **filters: str,
) -> HttpRequest:
    """`GET /v1/outputs/{group_id}` with exactly these query parameters."""
    query: dict[str, str] = {"limit": str(limit), **filters}
    if cursor is not None:
        query["cursor"] = str(cursor)
    if created_after is not None:
        query["created_after"] = created_after
    return HttpRequest(f"/v1/outputs/{group_id}", query=query)


# -- objects -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileBuilder:
    """One item of an output's `files` (every documented field present)."""

    id: str
    field: str = "images[0]"
    create_date: str = T0

    def build(self) -> Json:
        return {
            "create_date": self.create_date,
            "field": self.field,
            "file_checksum": md5ish(self.id),
            "file_metadata": {"width": 800},
            "file_type": "jpg",
            "file_url": f"https://shop.example.com/{self.id}.jpg",
            "id": self.id,
            "s3_key": f"{self.id}.jpg",
            "s3_url": f"https://files.reworkd.dev/{self.id}.jpg",
            "source_url": "https://shop.example.com/p/1",
            "url_etag_hash": md5ish(self.id[::-1]),
        }


@dataclass(frozen=True)
class OutputBuilder:
    """One output (a change of the record `key_hash`) as the docs' example shows it."""

    id: int
    key_hash: str
    change_type: str = "CREATE"
    create_date: str = T0
    update_date: str | None = T0
    data: Json = field(default_factory=lambda: {"name": "Desk", "price": 120.5})
    files: tuple[FileBuilder, ...] = ()
    extra: Json = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    def changed(self, change_type: str, output_id: int, moment: str) -> OutputBuilder:
        """A later change of the same record: a new row `id`, a new `update_date`."""
        return replace(self, id=output_id, change_type=change_type, update_date=moment)

    def with_data(self, **values: Any) -> OutputBuilder:
        return replace(self, data={**self.data, **values})

    def with_files(self, *ids: str) -> OutputBuilder:
        files = tuple(FileBuilder(id, field=f"images[{n}]") for n, id in enumerate(ids))
        return replace(self, files=files)

    def with_extra(self, **fields: Any) -> OutputBuilder:
        return replace(self, extra={**self.extra, **fields})

    def without(self, *names: str) -> OutputBuilder:
        return replace(self, missing=(*self.missing, *names))

    def build(self) -> Json:
        output: Json = {
            "id": self.id,
            "output_id": f"00000000-0000-4000-8000-{self.id:012d}",
            "root_job_id": "03583f9c-6c90-4f3c-9afd-186258d6f4d6",
            "is_approved": True,
            "create_date": self.create_date,
            "update_date": self.update_date,
            "last_scraped_date": self.update_date,
            "source_url": "https://shop.example.com/p/1",
            "change_type": self.change_type,
            "key_hash": self.key_hash,
            "value_hash": md5ish(f"{self.key_hash}/{self.id}"),
            "data": self.data,
            "tags": {"country": "US", "region": "US-CA", "external_customer_id": "12345"},
            "files": [file.build() for file in self.files],
            **self.extra,
        }
        return {name: value for name, value in output.items() if name not in self.missing}


# -- responses ---------------------------------------------------------------------------------


def outputs_page(items: Sequence[OutputBuilder], next_cursor: int | None = None) -> HttpResponse:
    """A 200 page: `{metadata: {next_url, next_cursor}, items}`; `next_url` has the docs' quirk
    (it points at `/v1/items`), which the code must not follow."""
    next_url = f"{BASE_URL}/v1/items?cursor={next_cursor}" if next_cursor is not None else None
    metadata = {"next_url": next_url, "next_cursor": next_cursor}
    return HttpResponse(json={"metadata": metadata, "items": [item.build() for item in items]})


def fastapi_error(status: int, detail: str) -> HttpResponse:
    """FastAPI's error envelope `{"detail": "..."}` (docs/reworkd.md#errors)."""
    return HttpResponse(status=status, json={"detail": detail})


def validation_error(name: str, message: str, value: str) -> HttpResponse:
    """FastAPI's 422: `{"detail": [{"loc": ["query", name], "msg": ..., "input": ...}]}`."""
    detail = [{"loc": ["query", name], "msg": message, "type": "value_error", "input": value}]
    return HttpResponse(status=422, json={"detail": detail})


# -- running the source without a pipeline -------------------------------------------------------


def legacy_state(watermarks: dict[str, str]) -> Json:
    """Pipeline state as a release with one resource + incremental per group left it."""
    resources = {
        f"outputs_{group}": {"incremental": {"update_date": {"last_value": value}}}
        for group, value in watermarks.items()
    }
    return {"sources": {"reworkd": {"resources": resources}}}


@dataclass
class Synced:
    """What one sync of a source yielded, table by table, with each table's computed hints."""

    tables: dict[str, list[Json]] = field(default_factory=dict)
    schemas: dict[str, TTableSchema] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)

    def rows(self, table: str = "outputs") -> list[Json]:
        return self.tables.get(table, [])

    def keys(self, table: str = "outputs") -> list[str]:
        return [row["key_hash"] for row in self.rows(table)]


class _NoPackageStorage:
    """Stands in for a load package's storage: the resource reads only its `load_id`."""

    def get_load_package_state(self, load_id: str) -> Json:  # noqa: ARG002 (dlt's signature)
        return {}


def extract(source: DltSource, state: Json) -> Synced:
    """Run every resource of `source` with `state` as the pipeline state, no pipeline involved.

    Each item is recorded under the table its hints name, as dlt's extractor would route it;
    `state` is the pipeline state the resource sees (an older release's per-group incremental
    watermarks live there). No pipeline is active, so no watermark is read from a destination:
    every group is new unless `state` says otherwise. A provider error is raised as itself, not
    wrapped in dlt's `ResourceExtractionError`.
    """
    synced = Synced()
    contexts = Container()
    # a pipeline an earlier test in this process created must not lend its destination
    contexts[PipelineContext].deactivate()
    with (
        contexts.injectable_context(StateInjectableContext(state=state)),  # type: ignore[arg-type]
        contexts.injectable_context(
            LoadPackageStateInjectableContext(
                load_id=LOAD_ID,
                storage=_NoPackageStorage(),  # type: ignore[arg-type]
            )
        ),
    ):
        for resource in source.resources.values():
            _record(resource, synced)
    return synced


class _AfterIncremental(MapItem):
    """A map step placed after the incremental filter: it sees what dlt would write."""

    placement_affinity: ClassVar[float] = 1.5


def _record(resource: DltResource, synced: Synced) -> None:
    def capture(item: Any, meta: Any) -> Any:
        table = resource.table_name if isinstance(resource.table_name, str) else resource.name
        if isinstance(meta, HintsMeta) and meta.create_table_variant:
            table = str(meta.hints["table_name"])
            resource.merge_hints(meta.hints, create_table_variant=True)
            synced.schemas[table] = resource.compute_table_schema(meta=TableNameMeta(table))
        synced.tables.setdefault(table, []).extend(_rows(item))
        return item

    try:
        for _ in resource.add_step(_AfterIncremental(capture)):
            pass
    except ResourceExtractionError as exc:
        raise (exc.__cause__ or exc) from None
    for name, value in resource.custom_metrics.items():
        synced.metrics[name] = synced.metrics.get(name, 0) + int(value)


def _rows(item: Any) -> Iterator[Json]:
    rows = item.to_pylist() if hasattr(item, "to_pylist") else item
    yield from rows if isinstance(rows, list) else [rows]
