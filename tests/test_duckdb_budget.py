"""The DuckDB memory budget applies however the DuckDB file is chosen, and a user's own
DuckDB memory settings win (pipelines/runner.py `destination_for`; docs/dlt-behaviours.md,
"DuckDB memory and threads").

Each check reads the settings inside dlt's own connection (`current_setting`), after dlt
opened the file from the credentials it resolved.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

from scrapesync.pipelines import registry
from scrapesync.pipelines.runner import DUCKDB_DEFAULTS, destination_for, pipeline_for, sync
from scrapesync.pipelines.warehouse import duckdb_file, hold_destination


def shown(setting: str, value: Any) -> str:
    """How DuckDB shows `value` of `setting` (`80MB` reads back as `76.2 MiB`)."""
    with duckdb.connect() as db:
        db.execute(f"SET {setting} = ?", (value,))
        return str(db.execute(f"SELECT current_setting('{setting}')").fetchone()[0])  # type: ignore[index]


BUDGET = {name: shown(name, value) for name, value in DUCKDB_DEFAULTS.items()}


def settings_in_dlt(pipeline: dlt.Pipeline) -> dict[str, str]:
    """The budget's settings (`DUCKDB_DEFAULTS`) as dlt's own connection to the file sees them."""
    names = list(DUCKDB_DEFAULTS)
    with pipeline.sql_client() as client:
        rows = client.execute_sql(
            "SELECT " + ", ".join(f"current_setting('{name}')" for name in names)
        )
    assert rows
    return {name: str(value) for name, value in zip(names, rows[0], strict=True)}


def tiny_load(workdir: Path, read_only: bool = False) -> dlt.Pipeline:
    """A one-row load through `destination_for("duckdb")`, as the runner builds it."""
    pipeline = dlt.pipeline(
        "budget_probe",
        destination=destination_for("duckdb"),
        dataset_name="probe",
        pipelines_dir=str(workdir / "pipelines"),
    )
    pipeline.run([{"a": 1}], table_name="probe")
    return pipeline


@pytest.fixture
def dlt_files(isolated: Path) -> Iterator[Callable[[str, str], None]]:
    """Write `.dlt/<name>` in the test's directory and make dlt read it (restored after)."""
    context = Container()[PluggableRunContext]
    run_dir = context.context.run_dir

    def write(name: str, text: str) -> None:
        (isolated / ".dlt").mkdir(exist_ok=True)
        (isolated / ".dlt" / name).write_text(text)
        context.reload(str(isolated))

    yield write
    # the original run dir may be `.`, still this test's directory: its files go first
    shutil.rmtree(isolated / ".dlt", ignore_errors=True)
    context.reload(run_dir)


def test_default_file_has_the_budget(isolated: Path) -> None:
    pipeline = tiny_load(isolated)
    assert settings_in_dlt(pipeline) == BUDGET
    assert (isolated / "scrapesync.duckdb").exists()


def test_file_named_by_env_has_the_budget(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = isolated / "elsewhere" / "warehouse.duckdb"
    target.parent.mkdir()
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(target))
    pipeline = tiny_load(isolated)
    assert settings_in_dlt(pipeline) == BUDGET
    assert target.exists()
    assert not (isolated / "scrapesync.duckdb").exists()


@pytest.mark.parametrize("file", ["config.toml", "secrets.toml"])
@pytest.mark.parametrize("shape", ["path", "table"])
def test_file_named_in_toml_has_the_budget_and_keeps_the_rest(
    isolated: Path, dlt_files: Callable[[str, str], None], file: str, shape: str
) -> None:
    if shape == "path":
        dlt_files(file, '[destination.duckdb]\ncredentials = "toml.duckdb"\n')
    else:
        # the user's other settings stay: a pragma and a session time zone
        dlt_files(
            file,
            "[destination.duckdb.credentials]\n"
            'database = "toml.duckdb"\n'
            'pragmas = ["enable_progress_bar"]\n'
            'session_timezone = "Europe/Berlin"\n',
        )
    pipeline = tiny_load(isolated)
    assert settings_in_dlt(pipeline) == BUDGET
    assert (isolated / "toml.duckdb").exists()
    if shape == "table":
        with pipeline.sql_client() as client:
            rows = client.execute_sql(
                "SELECT current_setting('TimeZone'), current_setting('enable_progress_bar')"
            )
        assert rows
        assert tuple(rows[0]) == ("Europe/Berlin", True)


def test_users_own_memory_limit_is_kept(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(isolated / "own.duckdb"))
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"memory_limit": "1GB"}')
    pipeline = tiny_load(isolated)
    # the user's limit wins; the setting they left alone keeps the budget
    assert settings_in_dlt(pipeline) == {**BUDGET, "memory_limit": shown("memory_limit", "1GB")}


def test_users_own_threads_in_a_pragma_are_kept(
    isolated: Path, dlt_files: Callable[[str, str], None]
) -> None:
    dlt_files(
        "secrets.toml",
        '[destination.duckdb.credentials]\ndatabase = "own.duckdb"\npragmas = ["threads=2"]\n',
    )
    pipeline = tiny_load(isolated)
    assert settings_in_dlt(pipeline) == {**BUDGET, "threads": "2"}


def test_read_only_keeps_the_budget(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(isolated / "ro.duckdb"))
    tiny_load(isolated)
    reader = dlt.pipeline(
        "budget_reader",
        destination=destination_for("duckdb", read_only=True),
        dataset_name="probe",
        pipelines_dir=str(isolated / "reader"),
    )
    file = duckdb_file(reader)
    assert file is not None
    assert file.read_only
    assert file.path == str(isolated / "ro.duckdb")
    assert settings_in_dlt(reader) == BUDGET


def test_a_real_sync_into_a_file_named_by_env_runs_with_the_budget(
    isolated: Path, make_sandbox: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox(reworkd={"groups": 1, "records_per_group": 50})
    target = isolated / "configured.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(target))
    options = sandbox.providers["reworkd"].source_options(sandbox.url("reworkd"))
    report = sync(registry.get("reworkd"), source_options=options)
    assert report.ok, report.error
    assert {t.table: t.total for t in report.tables}["outputs"] == 50
    pipeline = pipeline_for("reworkd")
    credentials: Any = pipeline.destination_client().config.credentials
    assert credentials.database == str(target)
    assert settings_in_dlt(pipeline) == BUDGET
    # the file the runner holds open in this process shares dlt's instance and its settings
    with hold_destination(pipeline):
        assert settings_in_dlt(pipeline) == BUDGET


def test_a_pipeline_scoped_file_has_the_budget(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = isolated / "scoped.duckdb"
    monkeypatch.setenv("BUDGET_PROBE__DESTINATION__DUCKDB__CREDENTIALS", str(target))
    pipeline = dlt.pipeline(
        "budget_probe",
        destination=destination_for("duckdb", pipeline_name="budget_probe"),
        dataset_name="probe",
        pipelines_dir=str(isolated / "pipelines"),
    )
    pipeline.run([{"a": 1}], table_name="probe")
    assert settings_in_dlt(pipeline) == BUDGET
    assert target.exists()
