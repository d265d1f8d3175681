"""The PostgreSQL at 127.0.0.1:5432 the destination, crash and concurrency tests load into."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES = ("127.0.0.1", 5432)


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here (None: they can)."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[dev]' installs dlt[postgres])"
    try:
        socket.create_connection(POSTGRES, timeout=2).close()
    except OSError as exc:
        return f"no PostgreSQL server at {POSTGRES[0]}:{POSTGRES[1]} ({exc})"
    return None


@contextmanager
def fresh_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh database, configured the dlt way (DESTINATION__POSTGRES__CREDENTIALS)."""
    reason = postgres_unavailable()
    if reason:
        if os.environ.get("SCRAPESYNC_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SCRAPESYNC_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    import psycopg2

    name = f"scrapesync_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    # trust auth ignores the password, but dlt's credentials require one
    url = f"postgresql://postgres:unused@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url)
    yield
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()
