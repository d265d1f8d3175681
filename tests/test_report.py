"""`scrapesync report` in a real headless browser: Debian's chromium driven by Playwright.

Every provider is synced twice from the sandbox (real HTTP, real dlt, real DuckDB), the report
is built from that file and opened from disk. The page must load with no console error and
without asking the network for anything, draw data points in every chart, render in the dark
and the light theme, fit a 390 px phone screen, and show hostile values from the destination as
text. Skips when chromium or Playwright is missing, unless SCRAPESYNC_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from scrapesync.pipelines import registry
from scrapesync.pipelines.cli import main
from scrapesync.pipelines.html_kit import DARK, LIGHT
from scrapesync.pipelines.html_report import build_report
from scrapesync.pipelines.runner import sync
from scrapesync.sandbox import Sandbox

CHROMIUM = Path("/usr/bin/chromium")
# no sandboxing (CI runs as root in a container), nothing fetched by the browser itself
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOSTILE = '<img src=x onerror="window.__pwned=1">'
HOSTILE_PROVIDER = "<script>window.__pwned=2</script>"


def db_name(path: Path) -> str:
    """The DuckDB catalog of a file: its name without the extension."""
    return path.stem


@pytest.fixture(scope="module")
def synced_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every provider synced from the sandbox, a first full and a second incremental sync."""
    work = tmp_path_factory.mktemp("report")
    path = work / "synced.duckdb"
    destination = dlt.destinations.duckdb(str(path))
    sandbox = Sandbox.start_default({})
    try:
        for epoch in range(2):
            if epoch:
                sandbox.advance()
            for name, api in sandbox.providers.items():
                report = sync(
                    registry.get(name),
                    destination=destination,
                    source_options=api.source_options(sandbox.url(name)),
                    pipelines_dir=str(work / "pipelines"),
                )
                assert report.ok, report.error
    finally:
        sandbox.stop()
    return path


def copy_db(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    return target


def report_of(db: Path, output: Path) -> Path:
    destination = dlt.destinations.duckdb(str(db))
    assert build_report(destination, output, pipelines_dir=str(output.parent / "pipelines"))
    return output


@pytest.fixture(scope="module")
def report(synced_db: Path) -> Path:
    return report_of(synced_db, synced_db.with_name("report.html"))


@pytest.fixture(scope="module")
def hostile_report(synced_db: Path) -> Path:
    """The report of a copy whose scrapesync tables hold markup where text belongs, and a
    completeness shortfall."""
    db = copy_db(synced_db, synced_db.with_name("hostile.duckdb"))
    catalog = db_name(db)
    with duckdb.connect(str(db)) as con:
        con.execute(
            f"""INSERT INTO {catalog}.scrapesync.sync_checks
                SELECT sync_id, provider, resource, check_name, now(), 10, 7, false, ?
                FROM {catalog}.scrapesync.sync_checks LIMIT 1""",
            [HOSTILE],
        )
        con.execute(
            f"""INSERT INTO {catalog}.scrapesync.sync_runs (sync_id, provider, resource,
                    started_at, finished_at, outcome, error, rows_inserted)
                VALUES ('x', ?, '*', now(), now(), ?, ?, 1)""",
            [HOSTILE_PROVIDER, HOSTILE, HOSTILE],
        )
        con.execute(
            f"UPDATE {catalog}.scrapesync.scrape_runs SET parent_id = ? "
            "WHERE parent_id IS NOT NULL",
            [HOSTILE],
        )
    return report_of(db, db.with_name("hostile.html"))


def browser_or_skip() -> Any:
    """Playwright's sync API, or a skip (a failure under SCRAPESYNC_REQUIRE_BROWSER=1) that
    names what to install."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("Playwright for Python (pip install -e '.[report]')")
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get("SCRAPESYNC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; SCRAPESYNC_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Opened:
    """A page opened from disk, with what it logged and what it requested."""

    def __init__(self, browser: Any, path: Path, width: int, scheme: str) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(
            viewport={"width": width, "height": 900}, color_scheme=scheme
        )
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())

    def js(self, script: str) -> Any:
        return self.page.evaluate(script)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    opened: list[Opened] = []

    def open_(path: Path, width: int = 1280, scheme: str = "light") -> Opened:
        opened.append(Opened(browser, path, width, scheme))
        return opened[-1]

    yield open_
    for page in opened:
        page.close()


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


MARKS_PER_CHART = """
    [...document.querySelectorAll('svg.chart')].map(svg => ({
        title: svg.querySelector('title').textContent,
        marks: svg.querySelectorAll('.mark').length,
    }))"""


def test_given_two_synced_epochs_when_the_report_opens_then_no_console_error_and_no_network(
    report: Path, open_page: Any
) -> None:
    page = open_page(report)

    assert page.errors == []  # CSP violations and script errors are console errors
    assert page.requests == [report.as_uri()]
    assert page.page.title().startswith("scrapesync report")
    assert page.js("document.getElementById('theme-toggle').hidden") is False


def test_given_two_synced_epochs_then_every_chart_has_data_points_and_a_title(
    report: Path, open_page: Any
) -> None:
    page = open_page(report)
    charts = page.js(MARKS_PER_CHART)

    assert charts, "the report drew no chart"
    assert [c for c in charts if c["marks"] == 0] == []
    assert all(c["title"] for c in charts)
    for provider in registry.PROVIDERS:
        card = f"#sync-history article[data-provider='{provider}'] svg.chart"
        rows_chart = page.js(f"document.querySelector(\"{card}\").querySelectorAll('.mark').length")
        assert rows_chart == 2, f"{provider}: one point per sync expected"
    mapped = [p.name for p in registry.PROVIDERS.values() if p.runs]
    for provider in mapped:
        bars = f"#scrape-success article[data-provider='{provider}'] svg.chart .mark"
        assert page.js(f'document.querySelectorAll("{bars}").length') > 0, provider
    assert page.js("document.querySelectorAll('table th[scope=col]').length") > 0


def test_given_the_scrape_health_model_is_missing_then_the_page_says_it_computed_the_figures(
    report: Path,
) -> None:
    text = report.read_text()

    assert "was not built in this destination" in text
    assert "computed from scrapesync.scrape_runs" in text


def test_given_a_scrape_health_model_then_the_page_shows_its_figures(
    synced_db: Path, tmp_path: Path
) -> None:
    db = copy_db(synced_db, tmp_path / "modelled.duckdb")
    provider = next(p.name for p in registry.PROVIDERS.values() if p.runs)
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE SCHEMA {db_name(db)}.scrapesync_models")
        con.execute(
            f"""CREATE TABLE {db_name(db)}.scrapesync_models.scrape_health AS
                SELECT ?::VARCHAR AS provider, 'parent-from-the-model' AS parent_id,
                       DATE '2026-01-02' AS day, 9876 AS runs, 9000 AS succeeded, 876 AS failed,
                       9000 / 9876 AS success_rate, 1 AS items_ok, 0 AS items_failed,
                       1.0 AS duration_p50_s, 2.0 AS duration_p95_s, 3.0 AS data_lag_s""",
            [provider],
        )

    text = report_of(db, tmp_path / "modelled.html").read_text()

    assert "From the dbt model scrapesync_models.scrape_health" in text
    assert "parent-from-the-model" in text
    assert "9,876 runs" in text


def test_given_the_dark_and_the_light_scheme_then_both_themes_render_and_the_toggle_flips_them(
    report: Path, open_page: Any
) -> None:
    background = "getComputedStyle(document.body).backgroundColor"
    mark = "getComputedStyle(document.querySelector('svg.chart .mark')).fill"
    light, dark = open_page(report, scheme="light"), open_page(report, scheme="dark")

    assert light.js(background) == rgb(LIGHT["bg"])
    assert dark.js(background) == rgb(DARK["bg"])
    assert light.js(mark) == rgb(LIGHT["accent"])
    assert dark.js(mark) == rgb(DARK["accent"])
    assert dark.errors == []
    assert light.errors == []

    light.page.click("#theme-toggle")
    assert light.js(background) == rgb(DARK["bg"])
    light.page.click("#theme-toggle")
    assert light.js(background) == rgb(LIGHT["bg"])


def test_given_a_390_px_phone_screen_then_nothing_overflows_horizontally(
    report: Path, open_page: Any
) -> None:
    page = open_page(report, width=390)

    assert page.js("document.documentElement.scrollWidth") <= 390
    widest = page.js(
        "Math.max(...[...document.querySelectorAll('svg.chart')]"
        ".map(s => s.getBoundingClientRect().right))"
    )
    assert widest <= 390


def test_given_markup_in_the_destination_then_it_shows_as_text_and_shortfalls_stand_out(
    hostile_report: Path, open_page: Any
) -> None:
    page = open_page(hostile_report)

    assert page.errors == []
    assert page.js("window.__pwned") is None
    assert page.js("document.querySelectorAll('main img, main script').length") == 0
    assert HOSTILE in page.js("document.body.innerText")
    assert HOSTILE_PROVIDER in page.js("document.body.innerText")
    short = page.js(
        "[...document.querySelectorAll('#completeness tr.short')].map(r => r.innerText)"
    )
    assert any("SHORT" in row and HOSTILE in row for row in short), short


def test_given_the_report_command_then_it_writes_the_page_or_says_there_is_nothing(
    synced_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = copy_db(synced_db, tmp_path / "cli.duckdb")
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(db))

    assert main(["report", "--output", str(tmp_path / "out" / "report.html")]) == 0
    assert "<svg" in (tmp_path / "out" / "report.html").read_text()

    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "empty.duckdb"))
    assert main(["report", "--output", str(tmp_path / "none.html")]) == 2
    assert not (tmp_path / "none.html").exists()
