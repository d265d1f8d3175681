"""One redaction for every secret: log lines, exception text, stored errors and URLs.

`redact(text)` replaces, with a stable `***`:

* every registered secret value (API keys, passwords, tokens), also in its URL-encoded,
  JSON-escaped, repr-escaped and base64 forms. Values are registered from the resolved
  configuration (`register_configured_secrets`: every dlt secret or env var whose key is named
  like a secret) and from every request a provider client sent (`register_request_secrets`:
  its auth headers), so a provider body that echoes the key is redacted before it reaches a
  message;
* the credential of an `Authorization: Basic|Bearer|Token ...` header or a bare `Bearer x`;
* a value given to a key named like a secret (`api_key=...`, `"password": "..."`,
  `X-API-KEY: ...`);
* the secret parts of every URL in the text (`redact_url`): userinfo, query parameters named
  like a secret, and the path segment after a registered secret path prefix (a provider
  registers e.g. its webhook path whose next segment is a token, `register_secret_path`).

`RedactingFilter` applies it to every log record (message, arguments, exception and stack
text); `install()` puts it on dlt's logger, the root logger and their handlers.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"
# shorter values would mask ordinary words; no credential scheme in use issues keys this short
MIN_SECRET_LENGTH = 4

# a key (config setting, query parameter, header, JSON field) whose value is a secret
_SECRET_WORDS = (
    r"api[_-]?key|apikey|x[_-]api[_-]key|access[_-]?key|secret[_-]?key|client[_-]?secret|"
    r"secret|token|access[_-]?token|auth[_-]?token|refresh[_-]?token|callback[_-]?token|"
    r"password|passwd|pwd|signature|sig|credentials?|private[_-]?key"
)
SECRET_NAME = re.compile(rf"^(?:[a-z0-9]+[_-])*(?:{_SECRET_WORDS})$", re.IGNORECASE)

_AUTH_HEADER = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization\b['\"]?\s*[:=]\s*['\"]?\s*(?:(?:basic|bearer|token|"
    r"digest)\s+)?)(?P<value>[^\s'\",;}]+)",
    re.IGNORECASE,
)
_SCHEME_TOKEN = re.compile(r"(?P<head>\b(?:basic|bearer)\s+)(?P<value>[A-Za-z0-9._~+/=-]{4,})")
# `name=value`, `name: value`, `"name": "value"`, `'name': 'value'` with a secret-like name
_KEY_VALUE = re.compile(
    rf"(?P<head>(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-])*(?:{_SECRET_WORDS})['\"]?\s*(?:=|:)\s*"
    r"(?P<quote>['\"]?))(?P<value>(?<=\")[^\"]+|(?<=')[^']+|[^\s'\"&,;}\]<>]+)",
    re.IGNORECASE,
)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>`]+", re.IGNORECASE)


class _Registry:
    """The secret values and secret path prefixes known so far (shared by every thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None
        self.paths: set[str] = set()

    def add(self, forms: set[str]) -> None:
        with self.lock:
            if forms <= self.values:
                return
            self.values |= forms
            # longest first, so a secret that contains another is masked whole
            ordered = sorted(self.values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def clear(self) -> None:
        # the secret paths stay: code declares them once, at import
        with self.lock:
            self.values.clear()
            self.pattern = None


_registry = _Registry()


def register_secret(value: Any) -> None:
    """Make `value` (and its encoded forms) redacted everywhere from now on."""
    if not isinstance(value, str):
        value = getattr(value, "get_secret_value", lambda: None)() if value is not None else None
        if not isinstance(value, str):
            return
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), repr(value)[1:-1]}
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms.add(base64.b64encode(value.encode()).decode().rstrip("="))
    _registry.add({form for form in forms if len(form) >= MIN_SECRET_LENGTH})


def register_secrets(values: Iterable[Any]) -> None:
    for value in values:
        register_secret(value)


def register_secret_path(prefix: str) -> None:
    """The path segment right after `/<prefix>/` in any URL is a secret (a webhook token)."""
    with _registry.lock:
        _registry.paths.add(prefix.strip("/"))


def forget_secrets() -> None:
    """Drop every registered secret value (tests start each case from nothing)."""
    _registry.clear()


def register_request_secrets(headers: Mapping[str, Any], url: str = "") -> None:
    """Register the credentials a request carried: its auth headers and secret query values.

    Called on every error a provider client builds, so the key it sent is known before the
    provider's own message (which may echo it) is quoted.
    """
    for name, value in headers.items():
        if not isinstance(value, str):
            continue
        lowered = name.lower()
        if lowered in ("authorization", "proxy-authorization"):
            _register_authorization(value)
        elif SECRET_NAME.match(lowered):
            register_secret(value)
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if SECRET_NAME.match(name):
            register_secret(value)


def _register_authorization(value: str) -> None:
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip() or scheme
    register_secret(credential)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential, validate=True).decode()
        except ValueError:
            return
        password = decoded.partition(":")[2]
        register_secret(password)
        register_secret(decoded)


def register_configured_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Register every configured secret: env vars and dlt secret values named like secrets.

    Env vars are read the way dlt maps them (`SOURCES__<P>__API_KEY`, `..__PASSWORD`,
    `DESTINATION__POSTGRES__CREDENTIALS__PASSWORD`); connection-string credentials
    (`..__CREDENTIALS=postgresql://user:pw@host/db`) give their password. The dlt providers'
    files (`.dlt/secrets.toml`) are walked for keys named like secrets.
    """
    env = os.environ if environ is None else environ
    for name, value in env.items():
        # only dlt's `SECTION__KEY` names: a plain `PWD` or `TERM` is no setting of ours
        if "__" in name:
            _register_setting(name.split("__")[-1], value)
    for mapping in _dlt_secret_documents():
        _walk(mapping)


def _register_setting(key: str, value: Any) -> None:
    if isinstance(value, Mapping):
        _walk(value)
    elif not isinstance(value, str):
        return
    elif SECRET_NAME.match(key):
        register_secret(value)
        _register_url_credentials(value)
    elif "://" in value:
        _register_url_credentials(value)


def _register_url_credentials(value: str) -> None:
    try:
        parts = urlsplit(value.strip())
        password = parts.password
    except ValueError:
        return
    register_secret(password)
    for name, query_value in parse_qsl(parts.query, keep_blank_values=True):
        if SECRET_NAME.match(name):
            register_secret(query_value)


def _walk(mapping: Mapping[str, Any]) -> None:
    for key, value in mapping.items():
        _register_setting(str(key), value)


def _dlt_secret_documents() -> list[Mapping[str, Any]]:
    """The documents of dlt's file-based providers (secrets.toml, config.toml), if set up."""
    try:
        from dlt.common.configuration.container import Container
        from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

        providers = Container()[PluggableRunContext].providers.providers
    except Exception:  # no run context yet: env vars are all there is
        return []
    documents = []
    for provider in providers:
        document = getattr(provider, "_config_doc", None)
        # config.toml too: a key named like a secret is one wherever it was put
        if isinstance(document, Mapping):
            documents.append(document)
    return documents


def redact_url(url: str) -> str:
    """`url` without its secrets: userinfo, secret-named query values, secret path tokens."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
        path = _redact_path(parts.path)
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(SECRET_NAME.match(name) for name, _ in pairs):
                query = urlencode(
                    [(n, MASK if SECRET_NAME.match(n) else v) for n, v in pairs], safe="*"
                )
        fragment = parts.fragment
        rebuilt = urlunsplit((parts.scheme, netloc, path, query, fragment))
    except ValueError:
        return _mask_values(url)
    return _mask_values(rebuilt)


def _redact_path(path: str) -> str:
    prefixes = _registry.paths
    if not prefixes:
        return path
    segments = path.split("/")
    for index in range(len(segments) - 1):
        if segments[index] in prefixes and segments[index + 1]:
            segments[index + 1] = MASK
    return "/".join(segments)


def _mask_values(text: str) -> str:
    pattern = _registry.pattern
    return pattern.sub(MASK, text) if pattern is not None else text


def redact(text: Any) -> str:
    """`text` (anything, as str) with every secret replaced by `***`."""
    text = text if isinstance(text, str) else str(text)
    text = _mask_values(text)
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _AUTH_HEADER.sub(lambda m: m.group("head") + MASK, text)
    text = _SCHEME_TOKEN.sub(lambda m: m.group("head") + MASK, text)
    return _KEY_VALUE.sub(_mask_key_value, text)


def _mask_key_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == MASK or value.startswith(MASK):
        return match.group(0)
    return match.group("head") + MASK


class RedactingFilter(logging.Filter):
    """Redacts a log record in place: its message with arguments, exception and stack text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed format: log it as given, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install(*loggers: logging.Logger) -> None:
    """Put the redacting filter on dlt's and the root logger (and `loggers`) and their handlers.

    A logger's filter sees only records logged on that logger, a handler's filter every record
    it writes (children's included), so both get it; installing twice changes nothing.
    """
    targets = [logging.getLogger("dlt"), logging.getLogger(), *loggers]
    for logger in targets:
        _add(logger)
        for handler in logger.handlers:
            _add(handler)


def _add(target: logging.Filterer) -> None:
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)


# settings every provider section is asked for, besides the secret-named ones it requires
COMMON_SECRET_SETTINGS = ("api_key", "password", "token", "callback_token", "client_secret")


def register_setting_secrets(
    section: str, keys: Iterable[str], lookup: Callable[[str], Any]
) -> None:
    """Register the secret-named settings of one config `section` (`sources.<provider>`) as
    `lookup` (dlt's secrets, then config) resolves them: whatever provider holds them, a
    vault included, not only env vars and secrets.toml."""
    for key in sorted({*keys, *COMMON_SECRET_SETTINGS}):
        if not SECRET_NAME.match(key):
            continue
        try:
            value = lookup(f"{section}.{key}")
        except Exception:  # a provider that cannot answer: nothing to register from it
            continue
        _register_setting(key, value)


def register_run_secrets(options: Mapping[str, Any] | None = None) -> None:
    """Before a sync or an action: redact every log line, know every configured secret, and
    the secret-named explicit source options (`options`, e.g. `api_key=` given in code)."""
    install()
    register_configured_secrets()
    for key, value in (options or {}).items():
        _register_setting(key, value)
