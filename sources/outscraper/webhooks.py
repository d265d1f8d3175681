"""Outscraper webhooks: signature check, notification parsing, and the sources' inbox.

Outscraper POSTs `{"id", "user_id", "status": "SUCCESS", "api_task", "results_location",
"quota_usage"}` when a task or request finishes, signed with `X-Hub-Signature-256:
sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with the account's API key
(docs/outscraper.md#webhooks). `api_task` tells API requests (true) from UI tasks (false) [I].
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import dlt
import orjson
from dlt.common import logger

from scrapesync.sources.common.inbox import acknowledge_notifications, pending_notifications

SIGNATURE_HEADER = "x-hub-signature-256"
PROVIDER = "outscraper"
STATE_KEY = "webhook_notifications"


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
        ValueError: the body is not an Outscraper webhook payload.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON ({exc})") from None
    if not isinstance(payload, dict) or not payload.get("id"):
        raise ValueError("payload has no `id`")
    return {
        "kind": "request" if payload.get("api_task") else "task",
        "object_id": str(payload["id"]),
        "status": str(payload.get("status") or ""),
    }


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
    def acknowledge_from(resource_state: dict[str, Any]) -> None:
        entry = resource_state.get(STATE_KEY) or {}
        if entry.get("seqs"):
            acknowledge_notifications(PROVIDER, entry["seqs"], entry.get("dir"))
