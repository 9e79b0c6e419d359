"""The kit's engines: the app's URL on our shipped driver, SQLite tuned for a writer beside a
scheduler (WAL, a busy timeout), and error lines with the password scrubbed.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from exporter.shared import dburl
from exporter.shared.dburl import redact

log = logging.getLogger("exporter.kit")


SQLITE_BUSY_TIMEOUT = 5.0
"""Seconds a SQLite connection of the kit waits for a lock before reporting "database is locked"."""


def normalize_url(url: str | sa.URL) -> sa.URL:
    """Parse a database URL and point it at the driver we ship for its dialect.

    The kit runs synchronously, so the app's `postgresql+asyncpg://` (or psycopg2, pg8000...)
    becomes psycopg 3, any MySQL/MariaDB driver PyMySQL, `sqlite+aiosqlite` the standard
    sqlite3 (`create_kit_engine` logs the replacement). An unknown scheme, or an unparsable URL,
    raises ValueError (`dburl.UrlError`) as one line listing the supported schemes, never the
    password.
    """
    return dburl.normalize_url(url)


def describe_url(url: sa.URL) -> str:
    """The URL for logs and errors: password and credential query values as `***`."""
    return dburl.display_url(url)


def create_kit_engine(
    url: str | sa.URL, *, sqlite_wal: bool = False, sqlite_busy_timeout: float = SQLITE_BUSY_TIMEOUT
) -> sa.Engine:
    """An engine for the kit (and, from `create_scheduler`, for the job store too).

    Connections are pinged before use so a restarted server or a killed connection costs one
    retry, not an error. On SQLite a busy timeout is always set; `sqlite_wal` also switches the
    file to WAL mode, so readers never block the scheduler's writes.
    """
    normalized = dburl.normalize(url)
    parsed = normalized.url
    if normalized.driver_note is not None:
        log.info("%s: %s", describe_url(parsed), normalized.driver_note.replace("reading", "using"))
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": sqlite_busy_timeout})
    busy_ms = int(sqlite_busy_timeout * 1000)

    @sa.event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if sqlite_wal:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        finally:
            cursor.close()

    return engine


def url_password(engine: sa.Engine) -> tuple[str, ...]:
    """Every credential in the engine's URL (password, `?sslpassword=`...), for redaction."""
    return dburl.url_secrets(engine.url)


def describe_error(exc: BaseException, engine: sa.Engine | None = None) -> str:
    """One line about a database error, without statement parameters and without passwords."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        detail = f"{type(exc.orig).__name__}: {exc.orig}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    first = detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__
    return redact(first[:500], *(url_password(engine) if engine is not None else ()))
