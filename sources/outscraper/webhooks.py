"""Outscraper webhooks: signature check, notification parsing, and the sources' inbox.

Outscraper POSTs `{"id", "user_id", "status": "SUCCESS", "api_task", "results_location",
"quota_usage"}` when a task or request finishes, signed with `X-Hub-Signature-256:
sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with the account's API key
(docs/outscraper.md#webhooks). `api_task` tells API requests (true) from UI tasks (false) [I].

`parse` is strict because the body comes from the network: `id` is a task id
(`YYYYMMDDHHMMSS` + 4 hex) or a request id (a UUID) (docs/outscraper.md#endpoints), accepted
in the bounded shape `WEBHOOK_ID` (or as an integer), `status` is a short word, `api_task` a
boolean; anything else is refused (400) rather than stored as some Python text.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import dlt
import orjson
from dlt.common import logger

from scrapesync.sources.common.inbox import (
    acknowledge_notifications,
    inbox_db,
    pending_notifications,
)

SIGNATURE_HEADER = "x-hub-signature-256"
PROVIDER = "outscraper"
STATE_KEY = "webhook_notifications"
# wider than the documented ids (a new id format still gets through), bounded and printable
WEBHOOK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)
WEBHOOK_STATUS = re.compile(r"[A-Za-z0-9_ -]{0,32}", re.ASCII)
MAX_INT_ID = 10**30


def signature(body: bytes, api_key: str) -> str:
    """The `X-Hub-Signature-256` value Outscraper sends for `body`."""
    return "sha256=" + hmac.new(api_key.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, api_key: str) -> bool:
    """Constant-time check of the signature header against the raw body."""
    if not header or not api_key:
        return False
    return hmac.compare_digest(signature(body, api_key).encode(), header.strip().encode())


def parse(body: bytes) -> dict[str, Any]:
    """The notification fields scrapesync keeps: kind, object id, status.

    Raises:
        ValueError: the body is not an Outscraper webhook payload (the message quotes no
            value of the body: it is logged).
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    api_task = payload.get("api_task")
    if api_task is not None and not isinstance(api_task, bool):
        raise ValueError("`api_task` is not a boolean")
    return {
        "kind": "request" if api_task else "task",
        "object_id": _object_id(payload.get("id")),
        "status": _status(payload.get("status")),
    }


def _object_id(value: Any) -> str:
    # bool is an int in Python: `true` is no id
    if type(value) is int and 0 <= value < MAX_INT_ID:
        return str(value)
    if isinstance(value, str) and WEBHOOK_ID.fullmatch(value):
        return value
    raise ValueError(
        "`id` is missing or not an id (1-64 ASCII letters, digits, '-' or '_', or an integer)"
    )


def _status(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and WEBHOOK_STATUS.fullmatch(value):
        return value
    raise ValueError("`status` is not a status word (up to 32 ASCII letters and digits)")


class WebhookInbox:
    """Pending notifications for the resources; acknowledged after a successful load.

    A resource calls `take(kind)`: the ids notified (read first by the resource) and the
    store sequence numbers, which it keeps in its resource state. `post_load` acknowledges
    those numbers, so a sync that fails leaves them pending for the next one.
    """

    def __init__(self, directory: str | None) -> None:
        self.directory = directory

    def take(self, kind: str) -> dict[str, str]:
        found: dict[str, str] = {}
        seqs: list[int] = []
        for note in pending_notifications(PROVIDER, self.directory, kind=kind):
            found[note.object_id] = note.status
            seqs.append(note.seq)
        if seqs:
            logger.info(f"outscraper: {len(seqs)} {kind} webhook notification(s) read first")
        dlt.current.resource_state()[STATE_KEY] = {"dir": self.directory, "seqs": seqs}
        return found

    @staticmethod
    def acknowledge_from(resource_state: dict[str, Any], pipeline: Any = None) -> None:
        """Acknowledge in the inbox of `pipeline`'s destination (default: the pipeline being
        run, i.e. the one whose post-load step calls this)."""
        entry = resource_state.get(STATE_KEY) or {}
        if entry.get("seqs"):
            db = inbox_db(pipeline) if pipeline is not None else None
            acknowledge_notifications(PROVIDER, entry["seqs"], entry.get("dir"), db=db)
