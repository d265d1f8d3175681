"""Oxylabs HTTP: error envelope and the clients over dlt's retrying session, both paced.

Two clients, because a lost answer means different things:
* reads (`GET` status, results, schedules, callbacker IPs) use `sources.common.build_client`:
  5xx, resets and timeouts are retried; nothing is created by a retry;
* the batch `POST` uses a session that only retries what provably created nothing: 429 (the
  plan's rate, "Too many requests") and connections that were never established. A 5xx, a
  timeout or a reset after the request went out may have created jobs: retrying would pay for
  them twice, so the journal marks the batch `unknown` instead (sources/oxylabs/journal.py).
"""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.auth import HttpBasicAuth
from requests import HTTPError, Response
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ConnectTimeout

from scrapesync.sources.common.client import (
    ProviderRESTClient,
    RetryCondition,
    build_client,
    throttled_within,
)
from scrapesync.sources.common.errors import RETRY_STATUS, ProviderSpec
from scrapesync.sources.common.pacing import RateLimiter, install_pacing
from scrapesync.sources.common.stats import RequestStats


def _oxylabs_error(body: Any) -> str | None:
    """Oxylabs errors are `{"message": "..."}` (docs/oxylabs.md#errors)."""
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        if isinstance(message, list):
            return "; ".join(str(item) for item in message)
        return str(message) if message else None
    return None


SPEC = ProviderSpec(
    name="oxylabs",
    parse_error=_oxylabs_error,
    not_found_hints=(
        (
            r"/v1/queries/(?P<job_id>\d+)",
            "job {job_id} is unknown or its results expired (Oxylabs keeps them >= 24 h): "
            "collect more often, or submit with storage_type/storage_url",
        ),
        (
            r"/v1/schedules/(?P<schedule_id>\d+)",
            "schedule {schedule_id} is unknown to this API user: check "
            "`sources.oxylabs.schedule_ids` (env SOURCES__OXYLABS__SCHEDULE_IDS)",
        ),
        (r"/v1/queries/batch", "fix the job parameters named in the message and submit again"),
    ),
    auth_setting="password",
)


def read_client(
    base_url: str, username: str, password: str, stats: RequestStats | None, limiter: RateLimiter
) -> ProviderRESTClient:
    """Client for GETs: retried on 429/5xx/resets by dlt's session, paced by `limiter`."""
    client = build_client(SPEC, base_url, HttpBasicAuth(username, password), stats=stats)
    install_pacing(client, limiter)
    return client


def _never_sent(exception: BaseException | None) -> bool:
    """True when the connection was never established, so no byte of the POST left."""
    if isinstance(exception, ConnectTimeout):
        return True
    if isinstance(exception, RequestsConnectionError):
        text = repr(exception.args[0] if exception.args else exception)
        return "NewConnectionError" in text or "Connection refused" in text
    return False


def _submit_retry(max_delay: float) -> RetryCondition:
    """Retry the batch POST only when no byte of it can have been acted on: a 429 within the
    longest wait (as every client), or a connection that was never established."""
    throttled = throttled_within(max_delay)

    def should_retry(response: Response | None, exception: BaseException | None) -> bool:
        if response is None and isinstance(exception, HTTPError):
            response = exception.response
        if response is not None:
            return throttled(response, None)
        return _never_sent(exception)

    return should_retry


def submit_client(
    base_url: str, username: str, password: str, stats: RequestStats | None, limiter: RateLimiter
) -> ProviderRESTClient:
    """Client for the batch POST: retries 429 and refused connections only (see module doc)."""
    client = build_client(
        SPEC,
        base_url,
        HttpBasicAuth(username, password),
        stats=stats,
        retry_status=(),
        retry_exceptions=(),
        retry_condition=_submit_retry,
    )
    install_pacing(client, limiter)
    return client


def may_have_created(status: int | None) -> bool:
    """Whether a failed batch POST may still have created jobs (so must not be resent)."""
    return status is None or status in RETRY_STATUS or status >= 600 or status == 408
