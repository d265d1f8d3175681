"""Oxylabs callback intake: verify, keep durably, let the next sync collect those jobs first.

Oxylabs POSTs the job JSON to `callback_url` when a job finishes (docs/oxylabs.md#callbacks).
It signs nothing; the documented protection is an allow-list of the senders, `GET
/v1/info/callbacker_ips`. scrapesync adds a per-deployment secret token in the path
(`callback_url = https://<host>/oxylabs/<token>`), so a forged POST needs both a sender address
Oxylabs uses and the token.

An accepted callback is written to the journal (`callbacks` table, one row per job id: a
duplicate or a late, out-of-order callback changes nothing) before the 200 goes out. The body
is kept because it carries `query`/`url` and the `client_notes` batch tag: a callback of a job
whose submission answer was lost gives the journal that job's id back (submit.py). Polling
stays the fallback: a lost callback only means the job is found by the next poll instead.

Everything from the network is checked strictly: the job `id` must be ASCII digits (`JOB_ID`;
Python's `str.isdigit` also accepts other scripts' digits), `status` a short string. A refused
callback raises `CallbackRejected` (an inbox `Rejected`): the intake answers its status and
logs the provider, sender and reason, never the path (the token). The token is also registered
with the shared redaction, so it is masked wherever else it might appear.

`sources.oxylabs.callbacker_ips` (env `SOURCES__OXYLABS__CALLBACKER_IPS`) is a list in TOML, or
in the env a JSON list (`'["192.0.2.1", "192.0.2.0/24"]'`) or a comma-separated string; a bad
entry is a configuration error naming the setting (`check_settings`, run when `scrapesync
listen` starts), never an error per callback.

Wiring: `cli.ListenHandler` (this package's `PROVIDER.webhook`) is the handler the shared
intake (`scrapesync listen`) calls for `POST /oxylabs/<token>`; it calls
`CallbackHandler.accept`. It returns no notification for the shared store: the journal
already holds the callback durably (with the body the shared store does not keep), and the
oxylabs sync reads the journal.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import dlt
import orjson
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.common.inbox import Rejected
from scrapesync.sources.common.redact import MASK, register_secret
from scrapesync.sources.oxylabs.journal import Journal
from scrapesync.sources.oxylabs.resources import connect
from scrapesync.sources.oxylabs.settings import CALLBACKER_IPS_PATH, CALLBACKER_IPS_TTL

IPS_SETTING = "sources.oxylabs.callbacker_ips"
TOKEN_SETTING = "sources.oxylabs.callback_token"
MIN_TOKEN_LENGTH = 16
# Oxylabs job ids are 19-digit numbers (docs/oxylabs.md#tables); bounded, ASCII only
JOB_ID = re.compile(r"[0-9]{1,30}", re.ASCII)
MAX_STATUS_LENGTH = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRejected(Rejected):
    """A refused callback: the intake answers `status` and logs `reason` (never the token)."""


def parse_networks(value: Any, setting: str = IPS_SETTING) -> list[Network] | None:
    """The allow-list override: None when not set.

    Accepts a list (TOML), a JSON list string or a comma-separated string (env vars), of
    addresses or networks (`192.0.2.0/24`).

    Raises:
        ValueError: naming `setting` and the bad entry.
    """
    entries = _entries(value, setting)
    if entries is None:
        return None
    networks = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"`{setting}`: {entry!r} is not an IP address or network")
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"`{setting}`: {entry.strip()!r} is not an IP address or network "
                "(e.g. 192.0.2.10 or 192.0.2.0/24)"
            ) from None
    return networks


def _entries(value: Any, setting: str) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return list(value)
    if not isinstance(value, str):
        raise ValueError(f"`{setting}` must be a list of IP addresses, not {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if text.startswith("["):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValueError(f"`{setting}` starts with '[' but is not a JSON list") from None
        if not isinstance(parsed, list):
            raise ValueError(f"`{setting}` must be a JSON list of IP addresses")
        return parsed
    return text.split(",")


def check_token(token: str, setting: str = TOKEN_SETTING) -> None:
    """Raises ValueError (naming the setting, not the value) if `token` is too weak a secret."""
    if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or "/" in token:
        raise ValueError(
            f"oxylabs: `{setting}` must be a random secret of >= {MIN_TOKEN_LENGTH} ASCII "
            "characters without '/' (it is the path of the callback URL)"
        )


def _setting(name: str) -> Any:
    value: Any = dlt.secrets.get(f"sources.oxylabs.{name}")
    return value if value is not None else dlt.config.get(f"sources.oxylabs.{name}")


def check_settings() -> None:
    """`scrapesync listen`'s startup check of the callback settings that are set.

    Raises:
        ValueError: a bad `callbacker_ips` entry or a weak `callback_token` (names the setting).
    """
    parse_networks(_setting("callbacker_ips"))
    token = _setting("callback_token")
    if token:
        check_token(str(token))


class CallbackerIPs:
    """The senders Oxylabs uses: fetched from the API, cached `ttl` seconds, or overridden.

    A failed refresh keeps the last list (and retries after `ttl / 10`); with no list at all,
    every callback is refused (503): polling will still collect the jobs.
    """

    def __init__(
        self,
        reader: ProviderRESTClient | None,
        override: Sequence[str] | str | None = None,
        ttl: float = CALLBACKER_IPS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.ttl = ttl
        self.clock = clock
        fixed = parse_networks(override)
        self._networks: list[Network] = fixed or []
        self._fixed = fixed is not None
        self._expires = 0.0
        self._lock = threading.Lock()

    def allowed(self, address: str) -> bool:
        self._refresh()
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def known(self) -> bool:
        self._refresh()
        return bool(self._networks)

    def _refresh(self) -> None:
        if self._fixed or self.reader is None:
            return
        with self._lock:
            if self.clock() < self._expires:
                return
            try:
                ips = self.reader.get(CALLBACKER_IPS_PATH).json().get("ips") or []
                self._networks = parse_networks(list(ips), "GET " + CALLBACKER_IPS_PATH) or []
                self._expires = self.clock() + self.ttl
            except (ProviderAPIError, ValueError, OSError) as exc:
                logger.warning(f"oxylabs: callbacker IP list not refreshed ({exc}); keeping it")
                self._expires = self.clock() + self.ttl / 10


class CallbackHandler:
    """Turns one POST into a durable journal row, or refuses it."""

    def __init__(self, journal: Journal, token: str, ips: CallbackerIPs) -> None:
        check_token(token)
        register_secret(token)
        self.journal = journal
        self.token = token
        self.ips = ips

    @classmethod
    def from_config(cls) -> CallbackHandler:
        """Build from dlt config: credentials, `callback_token`, `callbacker_ips` override.

        Raises:
            CallbackRejected: 503 when the settings are missing or bad (logged with the
                setting to fix; the sender is told only that callbacks are not configured).
        """
        try:
            options = {
                name: value
                for name in ("base_url", "journal_path")
                if (value := _setting(name)) is not None
            }
            ips = parse_networks(_setting("callbacker_ips"))
            token = str(_setting("callback_token") or "")
            check_token(token)
            ox = connect(_setting("username") or "", _setting("password") or "", **options)
        except ValueError as exc:
            logger.warning(f"oxylabs: callbacks refused until configured: {exc}")
            raise CallbackRejected(503, "oxylabs callbacks are not configured") from None
        override = None if ips is None else [str(network) for network in ips]
        return cls(ox.journal, token, CallbackerIPs(ox.reader, override))

    def accept(self, remote: str, path: str, body: bytes) -> dict[str, Any]:
        """Verify and store one callback; returns the job; raises `CallbackRejected`."""
        # the token is compared in constant time and never logged
        if not hmac.compare_digest(path.strip("/").encode(), self.token.encode()):
            raise CallbackRejected(404, "unknown callback path")
        if not self.ips.known():
            raise CallbackRejected(503, "callbacker IP list unavailable; the sync will poll")
        if not self.ips.allowed(remote):
            raise CallbackRejected(403, f"sender {remote} is not an Oxylabs callbacker IP")
        # the job echoes its `callback_url`, whose last segment is the token: kept masked
        body = body.replace(self.token.encode(), MASK.encode())
        job = parse_job(body)
        stored = self.journal.store_callback(job, body)
        verdict = "stored" if stored else "duplicate"
        logger.info(f"oxylabs: callback for job {job['id']} ({job.get('status')}): {verdict}")
        return job


def parse_job(body: bytes) -> dict[str, Any]:
    """The callback's job object, its `id` as ASCII digits text; raises `CallbackRejected` 400."""
    try:
        job = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallbackRejected(400, "body is not JSON") from None
    if not isinstance(job, dict):
        raise CallbackRejected(400, "body is not an Oxylabs job (not a JSON object)")
    job_id = job.get("id")
    # bool is an int in Python: `true` is no id
    if type(job_id) is int and job_id >= 0:
        job_id = str(job_id)
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise CallbackRejected(400, "body is not an Oxylabs job (`id` is not 1-30 ASCII digits)")
    status = job.get("status")
    if status is not None and not (isinstance(status, str) and len(status) <= MAX_STATUS_LENGTH):
        raise CallbackRejected(400, "body is not an Oxylabs job (`status` is not a short string)")
    notes = job.get("client_notes")
    if notes is not None and not isinstance(notes, str):
        raise CallbackRejected(400, "body is not an Oxylabs job (`client_notes` is not text)")
    return {**job, "id": job_id}
