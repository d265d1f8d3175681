"""`scrapesync demo`: every provider, from the in-process sandbox, into a local DuckDB file.

Syncs once, lets the sandbox's data change (updates, deletes, new records), syncs again
incrementally, then checks the tables against the sandbox's own truth and runs a sample query,
builds the dbt models (when the `dbt` extra is installed) and writes the HTML report beside the
DuckDB file.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import dlt
import duckdb

from scrapesync.pipelines import registry
from scrapesync.pipelines.html_report import build_report
from scrapesync.pipelines.report import format_report
from scrapesync.pipelines.runner import sync
from scrapesync.pipelines.transform import build_models
from scrapesync.sandbox import Sandbox
from scrapesync.sandbox.registry import sandbox_classes


def run_demo(db_path: str) -> int:
    """Run the demo; returns the process exit code."""
    path = Path(db_path).resolve()
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    destination = dlt.destinations.duckdb(str(path))
    with Sandbox.start_default(demo_sizes()) as sandbox, tempfile.TemporaryDirectory() as work:
        print(f"sandbox on {sandbox.base_url}; loading into {path}\n")
        ok = _sync_all(sandbox, destination, work, "first sync (full load)")
        changes = sandbox.advance()
        print(
            "sandbox data changed: "
            + "; ".join(
                f"{name}: " + ", ".join(f"{count} {kind}" for kind, count in counts.items())
                for name, counts in changes.items()
            )
            + "\n"
        )
        ok = _sync_all(sandbox, destination, work, "second sync (incremental)") and ok
        ok = _check(sandbox, path) and ok
        _sample(path)
        ok = _build_models(path) and ok
        ok = _build_report(destination, path, work) and ok
    return 0 if ok else 1


def _build_models(path: Path) -> bool:
    """The dbt models (`scrapesync transform`) over the demo file; skipped, not failed, when
    dbt (the `dbt` extra, which the README's demo command installs) is not installed."""
    print("\n== models (scrapesync transform)")
    if importlib.util.find_spec("dbt") is None:
        print("models skipped: dbt is not installed (pip install -e '.[dbt]')")
        return True
    result = build_models(destination="duckdb", db_path=str(path))
    for line in result.summary:
        print(line)
    return bool(result.ok)


def _build_report(destination: Any, path: Path, work: str) -> bool:
    """The HTML report of the demo file, beside it (`scrapesync report`)."""
    output = report_path(path)
    if not build_report(destination, output, pipelines_dir=work):
        print("\nreport: nothing to report (no sync recorded)")
        return False
    print(f"\nreport: {output}  (open it in a browser)")
    return True


def report_path(db_path: Path) -> Path:
    """Where the demo writes its report: `<db name>_report.html` beside the DuckDB file."""
    return db_path.with_name(f"{db_path.stem}_report.html")


def _sync_all(sandbox: Sandbox, destination: Any, work: str, title: str) -> bool:
    print(f"== {title}")
    ok = True
    for name, api in sandbox.providers.items():
        sandbox.requests.clear()
        report = sync(
            registry.get(name),
            destination=destination,
            source_options=api.source_options(sandbox.url(name)),
            pipelines_dir=work,
        )
        print(format_report(report) + "\n")
        ok = ok and report.ok
    return ok


def _check(sandbox: Sandbox, path: Path) -> bool:
    """Compare every table's row count with what the sandbox says must be there."""
    ok = True
    with duckdb.connect(str(path), read_only=True) as db:
        for name, api in sandbox.providers.items():
            for table, expected in api.expected_rows().items():
                row = db.sql(f"SELECT count(*) FROM {name}.{table}").fetchone()
                loaded = int(row[0]) if row else 0
                verdict = "equal" if loaded == expected else "DIFFERENT"
                print(f"check: {name}.{table} has {loaded} rows, the sandbox {expected}: {verdict}")
                ok = ok and loaded == expected
    return ok


def demo_sizes() -> dict[str, dict[str, Any]]:
    """Sandbox options per provider for the demo (each sandbox's `DEMO_OPTIONS`)."""
    return {name: dict(api.DEMO_OPTIONS) for name, api in sandbox_classes().items()}


def _sample(path: Path) -> None:
    with duckdb.connect(str(path), read_only=True) as db:
        for provider in registry.PROVIDERS.values():
            if provider.sample_query:
                print(f"\nsample query ({path.name}):{provider.sample_query}")
                db.sql(provider.sample_query).show()
