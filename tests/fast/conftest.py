"""The fast layer: no sandbox server, no DuckDB; requests answered in-process (`httpmock`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from httpmock import HttpMocker


@pytest.fixture
def http() -> Iterator[HttpMocker]:
    """Strict in-process HTTP at `http.base_url`; unused expectations fail the test."""
    with HttpMocker() as mocker:
        yield mocker
