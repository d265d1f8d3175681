"""Batch submission through the write-ahead journal: never twice by accident, never forgotten.

`Submitter.submit` splits a list of queries or URLs into batches of at most 5,000, skips every
query whose fingerprint (value + job parameters) the journal already holds, and walks each
batch through `planned -> sending -> submitted` (journal.py). A batch that a dead process left
in `sending` is resolved from callbacks (each job carries the batch id in `client_notes`), and
otherwise reported as `unknown`: it is never resent unless the user forces it.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from dlt.common import logger
from requests.exceptions import RequestException

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.common.redact import MASK, redact_url, register_secret, register_secret_path
from scrapesync.sources.oxylabs.client import may_have_created
from scrapesync.sources.oxylabs.journal import Journal, fingerprint
from scrapesync.sources.oxylabs.settings import (
    BATCH_PATH,
    CODE_TOO_MANY_RETRIES,
    LIST_PARAMS,
    MAX_BATCH,
    TAG_PREFIX,
)

# Test hook: `SCRAPESYNC_OXYLABS_FAILPOINT=<step>[:<n>]` SIGKILLs this process at the n-th
# (default first) pass through <step>; the crash tests use it to stop at an exact step. It is
# not configuration, so it is read from the environment on purpose.
FAILPOINT_ENV = "SCRAPESYNC_OXYLABS_FAILPOINT"
_passes: dict[str, int] = defaultdict(int)


def failpoint(step: str) -> None:
    """SIGKILL the process here when the crash tests ask for this step."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != step:
        return
    _passes[step] += 1
    if _passes[step] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class SubmitReport:
    """What one submission did."""

    submitted: int = 0
    already_known: int = 0
    duplicates_in_input: int = 0
    batches: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    resolved: int = 0


def batch_tag(batch_id: str) -> str:
    return f"{TAG_PREFIX}{batch_id}"


def force_command(batch_id: str) -> str:
    return f"scrapesync oxylabs resolve {batch_id} --resubmit"


def validate_params(kind: str, params: dict[str, Any]) -> None:
    if kind not in LIST_PARAMS:
        raise ValueError(f"oxylabs: submit `query` or `url` values, not {kind!r}")
    for name, value in params.items():
        if name in LIST_PARAMS:
            raise ValueError(
                f"oxylabs: POST {BATCH_PATH}: give the {name!r} values as the list to submit, "
                "not as a job parameter"
            )
        if isinstance(value, list) and name != "context":
            raise ValueError(
                f"oxylabs: POST {BATCH_PATH}: parameter {name!r} must be a single value (the "
                "batch endpoint takes lists only for `query` or `url`): submit one batch per value"
            )
    if not params.get("source"):
        raise ValueError(
            "oxylabs: job parameter `source` is required (e.g. universal, google_search)"
        )


class Submitter:
    """Submits batches through the ledger, one process at a time (the ledger's submit lock).

    The callback URL carries a secret (the listener's token): the ledger and the warehouse keep
    it redacted (`redact_url`), and the real URL is put back only into the POST's payload.
    """

    def __init__(
        self,
        journal: Journal,
        client: ProviderRESTClient,
        batch_size: int = MAX_BATCH,
        callback_token: str | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"oxylabs: batch_size must be 1..{MAX_BATCH} (the documented limit)")
        self.journal = journal
        self.client = client
        self.batch_size = batch_size
        self.callback_token = callback_token
        # redacted callback URL -> the real one, for the URLs given to this process
        self._callback_urls: dict[str, str] = {}
        if callback_token:
            register_secret(callback_token)

    def exclusive(self, wait: bool = True) -> Any:
        """Hold the ledger's submission lock (a context manager yielding False when another
        process holds it and `wait` is False); a killed holder releases it."""
        return self.journal.db.exclusive("submit", wait)

    def stored_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` as the ledger keeps them: the callback URL without its token."""
        url = params.get("callback_url")
        if not isinstance(url, str):
            return params
        # the documented callback URL is `.../oxylabs/<callback_token>` (README, Oxylabs)
        register_secret_path("oxylabs")
        redacted = redact_url(url)
        self._callback_urls[redacted] = url
        return {**params, "callback_url": redacted}

    def _real_callback_url(self, stored: str) -> str | None:
        """The URL to send for a stored (redacted) one; None when it cannot be restored."""
        if stored in self._callback_urls:
            return self._callback_urls[stored]
        if MASK not in stored:
            return stored
        if self.callback_token and stored.count(MASK) == 1:
            return stored.replace(MASK, self.callback_token)
        return None

    # -- public ---------------------------------------------------------------------------
    def submit(
        self, values: Sequence[str], kind: str, params: dict[str, Any], force: bool = False
    ) -> SubmitReport:
        """Submit `values` as `kind` jobs with `params`; known fingerprints are skipped."""
        validate_params(kind, params)
        params = self.stored_params(params)
        report = SubmitReport()
        with self.exclusive():
            self._recover(report)
            items = self._new_items(values, kind, params, force, report)
            for start in range(0, len(items), self.batch_size):
                self._plan_and_send(kind, params, items[start : start + self.batch_size], report)
        self.journal.close()
        return report

    def resume(self) -> SubmitReport:
        """Send batches planned by a dead process; resolve or report the ones it was sending."""
        report = SubmitReport()
        with self.exclusive(wait=False) as owned:
            if owned:
                self._recover(report)
        return report

    def resubmit_unknown(self, batch_id: str) -> SubmitReport:
        """Force a new attempt of every job of an `unknown` batch that has no job id."""
        report = SubmitReport()
        with self.exclusive():
            batch = self._batch(batch_id)
            if batch["state"] not in ("unknown", "sending"):
                raise ValueError(
                    f"oxylabs: batch {batch_id} is {batch['state']}, not unknown: nothing to force"
                )
            rows = [row for row in self.journal.batch_jobs(batch_id) if row["job_id"] is None]
            self.journal.set_batch_state(batch_id, "abandoned", "forced resubmission")
            items = [(r["fingerprint"], r["value"], r["attempt"] + 1) for r in rows]
            params = orjson.loads(batch["params"])
            self._plan_and_send(batch["kind"], self._user_params(params), items, report)
        return report

    def abandon(self, batch_id: str) -> None:
        """Give up an `unknown` batch for good (its queries may be submitted again later)."""
        with self.exclusive():
            self._batch(batch_id)
            self.journal.set_batch_state(batch_id, "abandoned", "abandoned by the user")

    def resubmit_faulted(self, max_attempts: int, include_613: bool = False) -> SubmitReport:
        """Give faulted jobs a new attempt while they have fewer than `max_attempts` retries.

        Skipped (until the next sync) while another process is submitting.
        """
        report = SubmitReport()
        if max_attempts <= 0:
            return report
        rows = self.journal.query(
            "SELECT * FROM jobs j WHERE status = 'faulted' AND origin = 'submit' AND attempt < ?"
            " AND attempt = (SELECT max(attempt) FROM jobs k WHERE k.fingerprint = j.fingerprint)",
            (max_attempts,),
        )
        rows = [r for r in rows if include_613 or r["fault_code"] != CODE_TOO_MANY_RETRIES]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[(row["kind"], row["params"])].append(row)
        with self.exclusive(wait=False) as owned:
            if not owned:
                return report
            for (kind, encoded), group in groups.items():
                items = [(r["fingerprint"], r["value"], r["attempt"] + 1) for r in group]
                params = self._user_params(orjson.loads(encoded))
                for start in range(0, len(items), self.batch_size):
                    chunk = items[start : start + self.batch_size]
                    self._plan_and_send(kind, params, chunk, report, supersede=group)
        return report

    # -- steps ----------------------------------------------------------------------------
    def _new_items(
        self,
        values: Sequence[str],
        kind: str,
        params: dict[str, Any],
        force: bool,
        report: SubmitReport,
    ) -> list[tuple[str, str, int]]:
        unique: dict[str, str] = {}
        for value in values:
            fp = fingerprint(kind, value, params)
            if fp in unique:
                report.duplicates_in_input += 1
            unique.setdefault(fp, value)
        known = self.journal.latest_attempts(list(unique))
        items = []
        for fp, value in unique.items():
            latest = known.get(fp)
            if latest is None:
                items.append((fp, value, 0))
            elif force or latest["status"] in ("rejected", "abandoned"):
                items.append((fp, value, latest["attempt"] + 1))
            else:
                report.already_known += 1
        return items

    def _plan_and_send(
        self,
        kind: str,
        params: dict[str, Any],
        items: Sequence[tuple[str, str, int]],
        report: SubmitReport,
        supersede: Sequence[dict[str, Any]] = (),
    ) -> None:
        batch_id = uuid.uuid4().hex
        self.journal.plan_batch(batch_id, kind, params, items)
        if supersede:
            fps = {fp for fp, _, _ in items}
            self.journal.update_jobs(
                [
                    (row["job_id"], {"status": "resubmitted", "resubmitted_as": batch_id})
                    for row in supersede
                    if row["fingerprint"] in fps
                ]
            )
        failpoint("after_intent")
        self._send(self._batch(batch_id), report)

    def _send(self, batch: dict[str, Any], report: SubmitReport) -> None:
        batch_id = batch["batch_id"]
        jobs = self.journal.batch_jobs(batch_id)
        payload = self._payload(batch, jobs)
        self.journal.set_batch_state(batch_id, "sending")
        failpoint("before_request")
        try:
            response = self.client.post(BATCH_PATH, json=payload)
            answer = response.json()
        except ProviderAPIError as exc:
            self._failed(batch_id, exc.status, str(exc), report)
            return
        except RequestException as exc:
            self._failed(batch_id, None, f"{type(exc).__name__}: {exc}", report)
            return
        failpoint("after_response")
        assignments = match_answer(batch["kind"], jobs, answer)
        if assignments is None:
            self._failed(batch_id, None, "the answer does not list the submitted jobs", report)
            return
        self.journal.record_answer(batch_id, assignments)
        failpoint("after_ledger_write")
        report.submitted += len(assignments)
        report.batches.append(batch_id)
        logger.info(f"oxylabs: batch {batch_id}: {len(assignments)} jobs submitted")

    def _failed(
        self, batch_id: str, status: int | None, message: str, report: SubmitReport
    ) -> None:
        if may_have_created(status):
            note = f"outcome unknown ({message}); to submit it again: {force_command(batch_id)}"
            self.journal.set_batch_state(batch_id, "unknown", note)
            report.unknown.append(batch_id)
            logger.warning(f"oxylabs: batch {batch_id}: {note}")
        else:
            self.journal.set_batch_state(batch_id, "rejected", message)
            report.rejected.append((batch_id, message))
            logger.warning(f"oxylabs: batch {batch_id} rejected: {message}")

    def _recover(self, report: SubmitReport) -> None:
        """Under the lock: `sending` batches belong to a dead process; `planned` ones are sent."""
        for batch in self.journal.batches(("sending",)):
            note = (
                "the process submitting it stopped before the answer was recorded; outcome "
                f"unknown; to submit it again: {force_command(batch['batch_id'])}"
            )
            self.journal.set_batch_state(batch["batch_id"], "unknown", note)
        report.resolved += resolve_from_callbacks(self.journal)
        report.unknown.extend(b["batch_id"] for b in self.journal.batches(("unknown",)))
        for batch in self.journal.batches(("planned",)):
            self._send(batch, report)

    def _batch(self, batch_id: str) -> dict[str, Any]:
        rows = self.journal.query("SELECT * FROM batches WHERE batch_id = ?", (batch_id,))
        if not rows:
            raise ValueError(
                f"oxylabs: no batch {batch_id!r} in the ledger {self.journal.location}"
            )
        return rows[0]

    @staticmethod
    def _user_params(params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

    def _payload(self, batch: dict[str, Any], jobs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        params = orjson.loads(batch["params"])
        if isinstance(params.get("callback_url"), str):
            real = self._real_callback_url(params["callback_url"])
            if real is None:
                logger.warning(
                    f"oxylabs: batch {batch['batch_id']}: its callback URL's token is not "
                    "configured here (`sources.oxylabs.callback_token`): sent without a "
                    "callback; its jobs are collected by polling"
                )
                del params["callback_url"]
            else:
                params["callback_url"] = real
        notes = params.get("client_notes")
        tag = batch_tag(batch["batch_id"])
        # the tag lets a callback name its batch when the submission answer was lost
        params["client_notes"] = f"{notes} {tag}" if notes else tag
        return {**params, batch["kind"]: [job["value"] for job in jobs]}


def match_answer(
    kind: str, jobs: Sequence[dict[str, Any]], answer: Any
) -> list[tuple[int, dict[str, Any]]] | None:
    """Pair the answer's job objects with the batch's positions (by value, in order)."""
    queries = answer.get("queries") if isinstance(answer, dict) else None
    if not isinstance(queries, list) or len(queries) != len(jobs):
        return None
    by_value: dict[str, list[int]] = defaultdict(list)
    for job in jobs:
        by_value[job["value"]].append(job["position"])
    assignments = []
    for job in queries:
        positions = by_value.get(str(job.get(kind)))
        if not positions or not job.get("id"):
            return None
        assignments.append((positions.pop(0), job))
    return assignments


def resolve_from_callbacks(journal: Journal) -> int:
    """Adopt job ids from callbacks of jobs whose submission answer was never recorded."""
    waiting = journal.query(
        "SELECT j.batch_id, j.position, j.kind, j.value FROM jobs j JOIN batches b USING"
        " (batch_id) WHERE j.job_id IS NULL AND j.status = 'intent'"
        " AND b.state IN ('unknown', 'submitted')"
    )
    if not waiting:
        return 0
    slots: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in waiting:
        slots[(row["batch_id"], row["value"])].append(row["position"])
    known = {r["job_id"] for r in journal.query("SELECT job_id FROM jobs WHERE job_id IS NOT NULL")}
    adopted: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for callback in journal.query("SELECT body, tag FROM callbacks"):
        job = orjson.loads(callback["body"])
        batch_id = _tagged_batch(callback["tag"] or "")
        value = str(job.get("query") or job.get("url") or "")
        positions = slots.get((batch_id or "", value))
        if batch_id and positions and str(job.get("id")) not in known:
            adopted[batch_id].append((positions.pop(0), job))
    for batch_id, assignments in adopted.items():
        journal.record_answer(batch_id, assignments)
        logger.warning(
            f"oxylabs: batch {batch_id}: {len(assignments)} job ids recovered from callbacks"
        )
    return sum(len(a) for a in adopted.values())


def _tagged_batch(notes: str) -> str | None:
    for word in notes.split():
        if word.startswith(TAG_PREFIX):
            return word.removeprefix(TAG_PREFIX)
    return None
