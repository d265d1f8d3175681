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

Wiring: `cli.ListenHandler` (this package's `PROVIDER.webhook`) is the handler the shared
intake (`scrapesync listen`) calls for `POST /oxylabs/<token>`; it calls
`CallbackHandler.accept`. It returns no notification for the shared store: the journal
already holds the callback durably (with the body the shared store does not keep), and the
oxylabs sync reads the journal.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import dlt
import orjson
from dlt.common import logger

from scrapesync.sources.common.client import ProviderRESTClient
from scrapesync.sources.common.errors import ProviderAPIError
from scrapesync.sources.oxylabs.journal import Journal
from scrapesync.sources.oxylabs.resources import connect
from scrapesync.sources.oxylabs.settings import CALLBACKER_IPS_PATH, CALLBACKER_IPS_TTL


class CallbackRejected(Exception):  # noqa: N818 - mirrors listen.Rejected
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CallbackerIPs:
    """The senders Oxylabs uses: fetched from the API, cached `ttl` seconds, or overridden.

    A failed refresh keeps the last list (and retries after `ttl / 10`); with no list at all,
    every callback is refused (503): polling will still collect the jobs.
    """

    def __init__(
        self,
        reader: ProviderRESTClient | None,
        override: Sequence[str] | None = None,
        ttl: float = CALLBACKER_IPS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.ttl = ttl
        self.clock = clock
        self._networks = [ipaddress.ip_network(ip, strict=False) for ip in override or []]
        self._fixed = override is not None
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
                self._networks = [ipaddress.ip_network(ip, strict=False) for ip in ips]
                self._expires = self.clock() + self.ttl
            except (ProviderAPIError, ValueError, OSError) as exc:
                logger.warning(f"oxylabs: callbacker IP list not refreshed ({exc}); keeping it")
                self._expires = self.clock() + self.ttl / 10


class CallbackHandler:
    """Turns one POST into a durable journal row, or refuses it."""

    def __init__(self, journal: Journal, token: str, ips: CallbackerIPs) -> None:
        if len(token) < 16:
            raise ValueError(
                "oxylabs: `sources.oxylabs.callback_token` must be a random secret of >= 16 "
                "characters (it is the path of the callback URL)"
            )
        self.journal = journal
        self.token = token
        self.ips = ips

    @classmethod
    def from_config(cls) -> CallbackHandler:
        """Build from dlt config: credentials, `callback_token`, `callbacker_ips` override."""

        def setting(name: str) -> Any:
            value: Any = dlt.secrets.get(f"sources.oxylabs.{name}")
            return value if value is not None else dlt.config.get(f"sources.oxylabs.{name}")

        options = {
            name: value
            for name in ("base_url", "journal_path")
            if (value := setting(name)) is not None
        }
        ox = connect(setting("username") or "", setting("password") or "", **options)
        override = setting("callbacker_ips")
        return cls(ox.journal, setting("callback_token") or "", CallbackerIPs(ox.reader, override))

    def accept(self, remote: str, path: str, body: bytes) -> dict[str, Any]:
        """Verify and store one callback; returns the job; raises `CallbackRejected`."""
        # the token is compared in constant time and never logged
        if not hmac.compare_digest(path.strip("/").encode(), self.token.encode()):
            raise CallbackRejected(404, "unknown callback path")
        if not self.ips.known():
            raise CallbackRejected(503, "callbacker IP list unavailable; the sync will poll")
        if not self.ips.allowed(remote):
            raise CallbackRejected(403, f"sender {remote} is not an Oxylabs callbacker IP")
        try:
            job = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise CallbackRejected(400, "body is not JSON") from None
        if not isinstance(job, dict) or not str(job.get("id") or "").isdigit():
            raise CallbackRejected(400, "body is not an Oxylabs job (no numeric `id`)")
        stored = self.journal.store_callback(job, body)
        verdict = "stored" if stored else "duplicate"
        logger.info(f"oxylabs: callback for job {job['id']} ({job.get('status')}): {verdict}")
        return job
