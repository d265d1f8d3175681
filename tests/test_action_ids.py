"""Every provider action refuses a malformed id before sending anything (sandbox request log),
`oxylabs resolve` decides only undecided batches, and a non-object preview is malformed."""

from __future__ import annotations

from typing import Any

import pytest

from scrapesync.pipelines.cli import main
from scrapesync.sandbox import FaultRule
from scrapesync.sources.oxylabs import connect

HOSTILE = [
    "../../admin/keys",
    "x?apiKey=evil&y=",
    "x#frag",
    "",
    "9" * 300,
    "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨",  # Arabic-Indic digits: str.isdigit() accepts them
]
UUID = "0b5f0b3e-2c1d-4e6f-9a7b-1c2d3e4f5a6b"
OBJECT_ID = "65a3b1c8d4e7f291a3b5c6d8"


def configure(h: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The provider's sandbox options as env config, the way the CLI reads them."""
    for key, value in h.options().items():
        if isinstance(value, str):
            monkeypatch.setenv(f"SOURCES__{h.provider.upper()}__{key.upper()}", value)
    h.sandbox.requests.clear()
    return h


def refused(
    h: Any, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, names: str
) -> None:
    """The action exits `code` with a message naming provider, action and id, and sends
    nothing at all (not even to another path of the sandbox)."""
    assert main(argv) == code, argv
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert names in text, text
    assert "Traceback" not in text
    assert "evil" not in text
    assert h.sandbox.requests.entries() == [], argv


@pytest.mark.parametrize("action", ["restart", "terminate"])
def test_given_a_malformed_task_id_then_outscraper_actions_send_nothing(
    harness: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    h = configure(harness("outscraper"), monkeypatch)

    for bad in HOSTILE:
        refused(h, capsys, ["outscraper", action, bad], 2, f"outscraper: {action}: task id")

    # the control: a real task id goes out, as its own single path segment
    task = sorted(h.api.tasks)[0]
    assert main(["outscraper", action, task]) == 0
    assert [(r.method, r.path) for r in h.sandbox.requests.entries()] == [
        ("PUT" if action == "restart" else "DELETE", f"/tasks/{task}")
    ]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["scrapewise", "run", "{bad}"], "scrapewise: run: scraper id"),
        (["scrapewise", "stop", "{bad}"], "scrapewise: stop: scraper id"),
        (["scrapewise", "merge", "{bad}", OBJECT_ID], "scrapewise: merge: group id"),
        (["scrapewise", "merge", OBJECT_ID, "{bad}"], "scrapewise: merge: run id"),
        (["scrapewise", "delete-run-data", "{bad}", "--yes"], "delete-run-data: run id"),
    ],
)
def test_given_a_malformed_id_then_scrapewise_actions_send_nothing(
    harness: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    names: str,
) -> None:
    h = configure(harness("scrapewise"), monkeypatch)

    for bad in [b for b in HOSTILE if b]:  # an empty id list is argparse's to refuse
        refused(h, capsys, [a.replace("{bad}", bad) for a in argv], 1, names)


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["opencx", "crawl", "{bad}"], "opencx: crawl: datasource id"),
        (["opencx", "pause", "{bad}"], "opencx: pause: datasource id"),
        (["opencx", "resume", "{bad}"], "opencx: resume: datasource id"),
        (["opencx", "cancel", "{bad}", UUID], "opencx: cancel: datasource id"),
        (["opencx", "cancel", UUID, "{bad}"], "opencx: cancel: crawl job id"),
    ],
)
def test_given_a_malformed_id_then_opencx_actions_send_nothing(
    harness: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    names: str,
) -> None:
    h = configure(harness("opencx", rate_limit=1000), monkeypatch)

    for bad in HOSTILE:
        refused(h, capsys, [a.replace("{bad}", bad) for a in argv], 2, names)


def test_given_a_preview_answering_a_non_object_then_delete_is_a_malformed_response(
    harness: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    h = configure(harness("scrapewise", runs_per_scraper=3), monkeypatch)
    h.sync()
    job = next(iter(h.api.truth()["rows"]))[0]
    for body in ("[1, 2]", '"ok"', "null", '{"token": "t", "previewSummary": [1]}'):
        h.sandbox.faults.add(
            FaultRule(
                provider="scrapewise",
                path="preview-delete$",
                status=200,
                body=body,
                headers={"Content-Type": "application/json"},
            )
        )
        h.sandbox.requests.clear()

        assert main(["scrapewise", "delete-run-data", job, "--yes"]) == 1

        out = capsys.readouterr().out
        assert "malformed response" in out, out
        assert "nothing was deleted" in out, out
        assert "AttributeError" not in out
        assert [r.method for r in h.sandbox.requests.entries()] == ["POST"], body


@pytest.fixture
def ox(harness: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    return configure(
        harness("oxylabs", schedules=0, workdir=str(tmp_path / "sandbox")), monkeypatch
    )


def batches(h: Any) -> dict[str, str]:
    journal = connect(**h.options()).journal
    return {r["batch_id"]: r["state"] for r in journal.query("SELECT * FROM batches")}


def test_given_resolve_then_only_an_unknown_batch_is_decided_and_others_are_clear_errors(
    ox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    submitter = connect(**ox.options()).submitter
    submitter.submit(["decided"], "query", {"source": "google_search"})
    rule = FaultRule(provider="oxylabs", path=r"^/v1/queries/batch$", status=502, times=None)
    ox.sandbox.faults.add(rule)
    submitter.submit(["undecided"], "query", {"source": "google_search"})
    ox.sandbox.faults.clear()
    states = batches(ox)
    decided = next(b for b, s in states.items() if s == "submitted")
    unknown = next(b for b, s in states.items() if s == "unknown")
    capsys.readouterr()

    for batch, words in (
        (decided, f"batch {decided} is submitted, not unknown"),
        ("f" * 32, f"no batch {'f' * 32} in the journal"),
        ("../../etc", "oxylabs: resolve: batch id '../../etc' is not"),
    ):
        for choice in ("--abandon", "--resubmit"):
            assert main(["oxylabs", "resolve", batch, choice]) == 2
            err = capsys.readouterr().err
            assert words in err, err
            assert "Traceback" not in err
    assert batches(ox) == states, "a refused resolve changed the journal"

    assert main(["oxylabs", "resolve", unknown, "--abandon"]) == 0
    assert f"oxylabs: batch {unknown} abandoned" in capsys.readouterr().out
    assert batches(ox)[unknown] == "abandoned"
    assert main(["oxylabs", "resolve", unknown, "--resubmit"]) == 2
    assert f"batch {unknown} is abandoned, not unknown" in capsys.readouterr().err
