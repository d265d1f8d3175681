"""`scrapesync outscraper restart|terminate TASK_ID` and Outscraper's webhook intake handler.

restart   -> `PUT /tasks/{taskId}`    ("Allows you to recreate tasks.")
terminate -> `DELETE /tasks/{taskId}` ("Allows you to terminate created tasks.")
(`settings.ENDPOINTS` rows `restart_task` and `terminate_task`; docs/outscraper.md#endpoints.)

The key and base URL come from the source's config (`sources.outscraper.api_key`,
`sources.outscraper.base_url`, or their env vars). Importing this module registers the
`outscraper` handler of `scrapesync listen` (`PROVIDER.webhook`).

A task id is checked against its documented format (`YYYYMMDDHHMMSS` plus 4 hex characters,
docs/outscraper.md) and URL-escaped by `scrapesync.sources.common.ids` before the path is
built: `../../admin/keys` or `x?apiKey=evil` is refused and nothing is sent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import dlt
from dlt.common import logger

from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.common.ids import IdFormat, fill_path
from scrapesync.sources.common.inbox import Notification, Rejected, WebhookRequest
from scrapesync.sources.outscraper.client import SPEC, OutscraperClient
from scrapesync.sources.outscraper.settings import BASE_URL, Endpoint, endpoint
from scrapesync.sources.outscraper.webhooks import SIGNATURE_HEADER, parse, verify

# docs/outscraper.md: "Task ids are `YYYYMMDDHHMMSS` plus 4 hex characters"
TASK_ID = IdFormat(
    "task id",
    r"[0-9]{14}[0-9a-f]{4}",
    "an id of 14 digits (YYYYMMDDHHMMSS) then 4 lowercase hex characters",
    "20211211132758c8e9",
    18,
)
_RESTART = endpoint("restart_task")
_TERMINATE = endpoint("terminate_task")
# action -> (endpoint, past tense, help)
ACTIONS: dict[str, tuple[Endpoint, str, str]] = {
    "restart": (
        _RESTART,
        "restarted",
        f"re-run the task under the same id ({_RESTART.method} {_RESTART.path})",
    ),
    "terminate": (
        _TERMINATE,
        "terminated",
        f"terminate and remove the task ({_TERMINATE.method} {_TERMINATE.path})",
    ),
}


def _setting(key: str) -> str | None:
    value: Any = dlt.secrets.get(f"sources.outscraper.{key}")
    value = value or dlt.config.get(f"sources.outscraper.{key}")
    return str(value) if value else None


def run_action(action: str, task_id: str, api_key: str, base_url: str) -> str:
    """Run one task action; returns the line to print. Raises `ProviderAPIError`, or
    `InvalidIdError` (a `ValueError`, nothing sent) for a task id that is not one."""
    call, done, _ = ACTIONS[action]
    path = fill_path(call.path, provider="outscraper", action=action, task_id=(task_id, TASK_ID))
    answer = OutscraperClient(api_key, base_url).call(call.method, path)
    return f"outscraper: task {task_id.strip()} {done} ({answer or 'no message'})"


def cmd_action(args: argparse.Namespace) -> int:
    api_key = _setting("api_key")
    if not api_key:
        sys.stderr.write(f"scrapesync: outscraper has no API key: {SPEC.auth_hint()}\n")
        return 2
    base_url = args.base_url or _setting("base_url") or BASE_URL
    try:
        sys.stdout.write(run_action(args.action, args.task_id, api_key, base_url) + "\n")
    except ProviderAPIError as exc:
        sys.stderr.write(f"scrapesync: {exc}\n")
        return 1
    except ValueError as exc:  # a malformed task id: refused before anything was sent
        sys.stderr.write(f"scrapesync: {exc}\n")
        return 2
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`scrapesync outscraper ...` (the provider's `actions`)."""
    parser = commands.add_parser("outscraper", help="Outscraper task actions")
    actions = parser.add_subparsers(dest="action", required=True)
    for name, (_, _, help_text) in ACTIONS.items():
        action = actions.add_parser(name, help=help_text)
        action.add_argument("task_id", help="task id, e.g. 20211211132758c8e9")
        action.add_argument("--base-url", default=None, help="API root (default: config)")
        action.set_defaults(func=cmd_action)


def webhook_handler(
    api_key: str | None = None,
) -> Callable[[WebhookRequest], list[Notification]]:
    """Outscraper's intake handler: signature check, then one notification per delivery.

    Args:
        api_key: the signing key; by default `sources.outscraper.api_key`, read at the first
            delivery (so `scrapesync listen` starts before the key is configured).
    """

    def handle(request: WebhookRequest) -> list[Notification]:
        key = api_key or _setting("api_key")
        if not key:
            raise Rejected(401, "no Outscraper API key configured to verify signatures")
        if not verify(request.body, request.header(SIGNATURE_HEADER), key):
            raise Rejected(401, "missing or invalid X-Hub-Signature-256")
        try:
            fields = parse(request.body)
        except ValueError as exc:
            raise Rejected(400, f"not an Outscraper webhook: {exc}") from None
        logger.info(f"listen: outscraper {fields['kind']} {fields['object_id']} {fields['status']}")
        return [Notification("outscraper", **fields)]

    return handle
