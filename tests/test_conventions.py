"""Project conventions that keep every provider alike, and the README honest."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import pipeline_for
from scrapesync.sandbox import Sandbox
from scrapesync.sources.common.provider import Provider, merge_tables

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up (two commands)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_gives_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("scrapesync demo")
    assert tests.endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci


@pytest.mark.parametrize("name", sorted(registry.PROVIDERS))
def test_every_provider_documents_its_resources(name: str, harness: Callable[..., Any]) -> None:
    provider = registry.PROVIDERS[name]
    harness(name).sync()  # its tables and keys are what its resources declare: the dlt schema
    tables = merge_tables(pipeline_for(name).default_schema)
    assert tables, f"{name}: a sync loaded no keyed table"
    module = sys.modules[provider.source.__module__]
    assert module.__doc__, f"{name}: the source package needs a module docstring"
    readme = (ROOT / "README.md").read_text()
    assert f"(`sources.{name}`)" in readme, f"{name}: README lacks a configuration section"
    for table in tables:
        assert f"`{table}`" in readme, f"{name}: README lacks table {table}"


@pytest.mark.parametrize("name", sorted(registry.PROVIDERS))
def test_every_resource_declares_key_disposition_and_its_handling(name: str) -> None:
    for resource_name, resource in _sample_source(registry.PROVIDERS[name]).items():
        hints = resource.compute_table_schema()
        assert hints.get("write_disposition"), f"{resource_name}: no write disposition"
        if hints["write_disposition"] == "merge":
            assert any(c.get("primary_key") for c in hints["columns"].values()), resource_name
        doc = inspect.unwrap(resource._pipe.gen).__doc__
        assert doc is not None, f"{resource_name}: resource function needs a docstring"
        for word in (
            "Primary key",
            "Write disposition",
            "Incremental",
            "Updates",
            "Deletes",
            "Late",
        ):
            assert word in doc, f"{resource_name}: docstring does not say {word!r}"


def _sample_source(provider: Provider) -> dict[str, Any]:
    with Sandbox.start_default() as sandbox:
        api = sandbox.providers[provider.name]
        source = provider.source(**api.source_options(sandbox.url(provider.name)))
        return dict(source.resources)


def test_lint_and_types_are_clean() -> None:
    bin_dir = Path(sys.executable).parent
    ruff = subprocess.run(
        [str(bin_dir / "ruff"), "check", "."], check=False, cwd=ROOT, capture_output=True, text=True
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    mypy = subprocess.run(
        [str(bin_dir / "mypy"), "scrapesync"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr


def test_no_print_in_library_code() -> None:
    for path in (ROOT / "sources").rglob("*.py"):
        assert not re.search(r"^\s*print\(", path.read_text(), re.M), path
