"""`scrapesync transform`: build the dbt models of `transform/` on the destination the syncs use.

The dbt project (README "Transformation models") reads the provider datasets and scrapesync's
own dataset and writes its models into dataset `scrapesync_models` of the same database. This
module is the runner: it resolves the destination exactly as `scrapesync sync` does (dlt's
config, `pipelines/runner.py` `destination_for`), writes a dbt profile for it into a temporary
working directory (dbt's `target/` and `logs/` go there too, never into the current directory),
tells the project which input tables exist, and runs `dbt build` in-process through dbt-core's
`dbtRunner`. No network is used: no dbt packages, no version check, no usage statistics.

Missing inputs (a provider never synced) fail nothing: the runner lists the tables present in
every provider dataset and in `scrapesync`, passes them as the dbt variable
`scrapesync_tables`, and each model is enabled only when its inputs are in that list.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common import logger

from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import destination_for
from scrapesync.pipelines.warehouse import DATASET

MODELS_DATASET = "scrapesync_models"
# the dbt project sits at the repository root, beside the folders `scrapesync/` links
PROJECT_DIR = Path(__file__).resolve().parents[1] / "transform"
PROFILE = "scrapesync"
# dbt scrubs the values of DBT_ENV_SECRET_* variables from its logs and errors
PASSWORD_ENV = "DBT_ENV_SECRET_SCRAPESYNC_PASSWORD"
SUPPORTED = ("duckdb", "postgres")
# DuckDB is a single writer: more dbt threads only queue; PostgreSQL builds models in parallel
THREADS = {"duckdb": 1, "postgres": 4}
FAILED_STATUSES = ("error", "fail", "runtime error")


class TransformError(Exception):
    """A transform that could not start (unsupported destination, no dbt installed)."""


@dataclass
class TransformResult:
    """The outcome of one `dbt build`: ok, what failed, and a few lines for people."""

    ok: bool
    failures: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def build_models(
    destination: str = "duckdb",
    select: Sequence[str] | None = None,
    db_path: str | None = None,
    work_dir: str | None = None,
    verbose: bool = False,
) -> TransformResult:
    """Build (models and their tests) the dbt project on a destination; never raises.

    Args:
        destination: dlt destination name the syncs use: `duckdb` (./scrapesync.duckdb unless
            `DESTINATION__DUCKDB__CREDENTIALS` names another) or `postgres`
            (`DESTINATION__POSTGRES__CREDENTIALS`).
        select: dbt node selection (`--select`), passed through; default everything.
        db_path: a DuckDB file to build in (overrides `destination`; the demo uses it).
        work_dir: keep dbt's profile, target/ and logs/ here (default: a temporary directory,
            removed afterwards).
        verbose: let dbt log its progress to stdout.
    """
    try:
        with _work_dir(work_dir) as work:
            pipeline = _pipeline(destination, db_path, work)
            kind = _kind(pipeline)
            present = present_tables(pipeline)
            with _profile(pipeline, kind, work):
                try:
                    result = _run_dbt(dbt_args(work, present, select, verbose))
                finally:
                    if kind == "duckdb":
                        release_duckdb()
            result.summary.insert(0, _inputs_line(kind, present))
            return result
    except TransformError as exc:
        return TransformResult(False, [str(exc)], [f"transform: {exc}"])


def _pipeline(destination: str, db_path: str | None, work: Path) -> dlt.Pipeline:
    """A dlt pipeline object on the destination, used for its credentials and SQL only."""
    target: Any = (
        dlt.destinations.duckdb(str(Path(db_path).resolve()))
        if db_path
        else destination_for(destination)
    )
    return dlt.pipeline(
        pipeline_name="scrapesync_transform",
        destination=target,
        dataset_name=MODELS_DATASET,
        pipelines_dir=str(work / "dlt"),
    )


def _kind(pipeline: dlt.Pipeline) -> str:
    kind = str(pipeline.destination.destination_type).rsplit(".", 1)[-1]
    if kind not in SUPPORTED:
        raise TransformError(
            f"the models build on {' and '.join(SUPPORTED)} only, not on {kind!r} "
            "(a destination without SQL has no tables for dbt to read)"
        )
    return kind


def input_datasets() -> list[str]:
    """The datasets the models read: every provider's, plus scrapesync's own."""
    return [*registry.PROVIDERS, DATASET]


def present_tables(pipeline: dlt.Pipeline) -> list[str]:
    """`dataset.table` for every table of the input datasets that exists in the destination."""
    datasets = input_datasets()
    marks = ", ".join(["%s"] * len(datasets))
    sql = (
        "SELECT table_schema, table_name FROM information_schema.tables "
        f"WHERE table_catalog = current_database() AND table_schema IN ({marks})"
    )
    with pipeline.sql_client() as client:
        rows = client.execute_sql(sql, *datasets) or []
    return sorted(f"{schema}.{table}" for schema, table in rows)


@contextmanager
def _work_dir(path: str | None) -> Iterator[Path]:
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="scrapesync-dbt-") as temporary:
        yield Path(temporary)


def profile_for(pipeline: dlt.Pipeline, kind: str) -> tuple[dict[str, Any], str | None]:
    """The dbt target for the pipeline's destination, and the password kept out of it."""
    credentials: Any = pipeline.destination_client().config.credentials
    target: dict[str, Any] = {"type": kind, "schema": MODELS_DATASET, "threads": THREADS[kind]}
    if kind == "duckdb":
        target["path"] = str(credentials.database)
        # the same memory budget the syncs use (runner.destination_for)
        if credentials.global_config:
            target["settings"] = dict(credentials.global_config.items())
        return target, None
    target.update(
        host=credentials.host,
        port=int(credentials.port or 5432),
        user=credentials.username,
        password="{{ env_var('" + PASSWORD_ENV + "', '') }}",
        dbname=credentials.database,
    )
    query = credentials.query or {}
    if query.get("sslmode"):
        target["sslmode"] = query["sslmode"]
    return target, credentials.password


@contextmanager
def _profile(pipeline: dlt.Pipeline, kind: str, work: Path) -> Iterator[None]:
    """profiles.yml in `work` (JSON is YAML); the password only in dbt's secret env var."""
    target, password = profile_for(pipeline, kind)
    profile = {PROFILE: {"target": kind, "outputs": {kind: target}}}
    (work / "profiles.yml").write_text(json.dumps(profile, indent=2), encoding="utf-8")
    previous = os.environ.get(PASSWORD_ENV)
    if password is not None:
        os.environ[PASSWORD_ENV] = str(password)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = previous


def dbt_args(
    work: Path, present: list[str], select: Sequence[str] | None, verbose: bool
) -> list[str]:
    args = [
        "build",
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(work),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
        "--vars",
        json.dumps({"scrapesync_tables": present}),
        # nothing leaves the machine: no version check, no anonymous usage statistics
        "--no-version-check",
        "--no-send-anonymous-usage-stats",
        "--no-use-colors",
        "--log-level",
        "info" if verbose else "none",
    ]
    if select:
        # a test is run only when every model it reads was built (or is upstream of one):
        # dbt's default would also run a relationships test whose other model is not built
        args += ["--select", *select, "--indirect-selection", "buildable"]
    return args


def _run_dbt(args: list[str]) -> TransformResult:
    if not (PROJECT_DIR / "dbt_project.yml").is_file():
        raise TransformError(f"the dbt project is missing: no {PROJECT_DIR / 'dbt_project.yml'}")
    try:
        from dbt.cli.main import dbtRunner
    except ImportError as exc:
        raise TransformError(
            "dbt is not installed: pip install 'scrapesync[dbt]' (dbt-core, dbt-duckdb, "
            "dbt-postgres)"
        ) from exc
    outcome = dbtRunner().invoke(args)
    nodes = list(getattr(outcome.result, "results", None) or [])
    failures = [describe_node(node) for node in nodes if _status(node) in FAILED_STATUSES]
    if outcome.exception is not None:
        failures.append(f"dbt: {type(outcome.exception).__name__}: {outcome.exception}")
    ok = bool(outcome.success) and not failures
    if not ok and not failures:
        failures.append("dbt build failed (see dbt's log with --dbt-dir)")
    for failure in failures:
        logger.warning(f"transform: {failure}")
    return TransformResult(ok, failures, [_counts_line(nodes), *failures])


def release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open after `dbtRunner` returns.

    dbt-duckdb holds one process-wide DuckDB instance (a class attribute of its connection
    manager) and only drops the reference at the end of a run; while it lives, the next sync in
    the same process (`scrapesync sync --transform`, the demo, the tests) cannot open the file
    with its own settings ("Can't open a connection to same database file with a different
    configuration"). No public API closes it, so this does what its `open` does before it
    replaces an environment.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if environment is not None:
            environment.close()


def _status(node: Any) -> str:
    return str(getattr(node.status, "value", node.status)).lower()


def describe_node(node: Any) -> str:
    """`model scrape_health: error: <first line of dbt's message>`."""
    message = " ".join(str(node.message or "").split())[:300]
    return f"{node.node.resource_type} {node.node.name}: {_status(node)}: {message}"


def _counts_line(nodes: list[Any]) -> str:
    counts: dict[str, dict[str, int]] = {}
    for node in nodes:
        kind = str(node.node.resource_type)
        per_kind = counts.setdefault(kind, {})
        per_kind[_status(node)] = per_kind.get(_status(node), 0) + 1
    if not counts:
        return "dbt built nothing (no model selected or no input table present)"
    parts = [
        f"{sum(by.values())} {kind}s (" + ", ".join(f"{n} {s}" for s, n in sorted(by.items())) + ")"
        for kind, by in sorted(counts.items())
    ]
    return f"dbt build into {MODELS_DATASET}: " + "; ".join(parts)


def _inputs_line(kind: str, present: list[str]) -> str:
    found = sorted({name.split(".", 1)[0] for name in present})
    missing = [name for name in input_datasets() if name not in found]
    line = f"transform on {kind}: inputs {', '.join(found) or 'none'}"
    return line + (f"; not synced (their models are off): {', '.join(missing)}" if missing else "")
