"""Fast tests run sources outside a pipeline: none may see a pipeline another test left active."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext


@pytest.fixture(autouse=True)
def no_active_pipeline() -> Iterator[None]:
    """Deactivate the pipeline an earlier test in this worker ran, before and after each test.

    A source iterated outside a pipeline reads the active pipeline's state: after a sandbox
    test synced Scrapewise in the same worker, its open runs showed up here as vanished.
    """
    Container()[PipelineContext].deactivate()
    yield
    Container()[PipelineContext].deactivate()
