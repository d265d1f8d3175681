"""The one id check for API paths (sources/common/ids.py): documented formats only, escaped."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrapesync.sources.common.ids import (
    DIGITS,
    HEX32,
    OBJECT_ID,
    SLUG,
    UUID,
    IdFormat,
    InvalidIdError,
    checked_id,
    fill_path,
    path_id,
)

TASK_ID = IdFormat(
    "task id", r"[0-9]{14}[0-9a-f]{4}", "an id of 14 digits then 4 hex", "20211211132758c8e9", 18
)
HOSTILE = [
    "../../admin/keys",
    "x?apiKey=evil&y=",
    "x#frag",
    "",
    "   ",
    "a" * 500,
    "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes
    "12\n3",
    "..",
    ".",
    "%2e%2e",
    "a/b",
    "a b",
]
FORMATS = [DIGITS, UUID, HEX32, OBJECT_ID, SLUG, TASK_ID]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.description)
@pytest.mark.parametrize("value", HOSTILE)
def test_given_a_hostile_id_then_every_format_refuses_it_naming_provider_action_and_format(
    fmt: IdFormat, value: str
) -> None:
    with pytest.raises(InvalidIdError) as raised:
        path_id(value, fmt.named("task id"), provider="acme", action="terminate")

    message = str(raised.value)
    assert message.startswith("acme: terminate: task id ")
    assert fmt.description in message
    assert fmt.example in message
    assert message.endswith("Nothing was sent.")


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.description)
def test_given_each_formats_own_example_then_it_passes_unchanged(fmt: IdFormat) -> None:
    assert path_id(fmt.example, fmt, provider="acme", action="a") == fmt.example


def test_given_a_pasted_id_with_surrounding_space_then_it_is_stripped() -> None:
    assert checked_id(" 20211211132758c8e9\n", TASK_ID, provider="acme", action="a") == (
        "20211211132758c8e9"
    )


def test_given_a_non_text_id_then_it_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidIdError, match=r"not text but int"):
        path_id(123, DIGITS, provider="acme", action="a")


def test_given_an_unescaped_character_a_format_allows_then_the_segment_is_escaped() -> None:
    wide = IdFormat("id", r"[a-z:@]{1,10}", "letters, ':' or '@'", "a:b")

    assert path_id("a:b@c", wide, provider="acme", action="a") == "a%3Ab%40c"


def test_given_a_template_then_fill_path_checks_every_placeholder() -> None:
    path = fill_path(
        "/crawl/{datasource_id}/crawls/{job_id}",
        provider="acme",
        action="cancel",
        datasource_id=(UUID.example, UUID.named("datasource id")),
        job_id=(UUID.example, UUID.named("job id")),
    )
    assert path == f"/crawl/{UUID.example}/crawls/{UUID.example}"

    with pytest.raises(InvalidIdError, match=r"acme: cancel: job id '\.\./x'"):
        fill_path(
            "/crawl/{datasource_id}/crawls/{job_id}",
            provider="acme",
            action="cancel",
            datasource_id=(UUID.example, UUID),
            job_id=("../x", UUID.named("job id")),
        )
    with pytest.raises(TypeError, match="placeholders"):
        fill_path("/tasks/{task_id}", provider="acme", action="a")


def test_given_a_refused_id_that_holds_a_key_then_the_message_does_not_echo_it() -> None:
    with pytest.raises(InvalidIdError) as raised:
        path_id("x?apiKey=k-98a7b6c5&y=", TASK_ID, provider="acme", action="terminate")

    assert "k-98a7b6c5" not in str(raised.value)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=80))
def test_given_any_text_then_an_accepted_id_is_one_safe_path_segment(value: str) -> None:
    for fmt in FORMATS:
        try:
            segment = path_id(value, fmt, provider="acme", action="a")
        except InvalidIdError:
            continue
        assert segment not in ("", ".", "..")
        assert segment.isascii()
        assert not set(segment) & set("/?#%\\ \t\r\n")
        assert len(segment) <= fmt.max_length


@settings(max_examples=200, deadline=None)
@given(value=st.from_regex(r"[0-9]{14}[0-9a-f]{4}", fullmatch=True))
def test_given_any_documented_task_id_then_it_is_accepted(value: str) -> None:
    assert path_id(value, TASK_ID, provider="acme", action="a") == value
