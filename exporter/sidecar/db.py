"""Read-only database access that cannot disturb the scheduler it watches.

APScheduler keeps the job store in the app's own database, so the sidecar must read without ever
holding a lock or a transaction the scheduler could trip over:

* SQLite is opened through ``file:...?mode=ro&uri=true`` (a plain ``?mode=ro`` is silently
  writable through SQLAlchemy), in autocommit, with no pooled connection: each poll opens, runs
  short SELECTs, and closes. A lingering read transaction makes APScheduler's UPDATE fail with
  "database is locked", after which an AsyncIOScheduler stops running jobs for good. (The one
  connection kept between polls only asks SQLite's commit count, in autocommit, and is never
  left inside a transaction: ``sources/store_version.py``.)
* SQLite keeps whatever bytes an app wrote in a text column, and its driver fails the whole
  read at the first value that is not valid UTF-8: one such history or heartbeat row would stop
  every poll of that table. Text is read leniently instead (invalid bytes become ``\\xNN``
  escapes, as in job ids), so a bad row costs only its own text.
* PostgreSQL and MySQL/MariaDB sessions are read-only with a statement timeout, so a slow or
  locked table costs one failed poll, never a pile-up of sessions.

Every error leaves this module as one line with the password scrubbed out.
"""

from __future__ import annotations

import functools
import urllib.parse
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from exporter.shared.dburl import normalize_url, redact


def sqlite_readonly_url(url: sa.URL) -> sa.URL:
    """``sqlite:///path`` -> ``sqlite:///file:path?mode=ro&uri=true`` (opened read-only)."""
    path = urllib.parse.quote(url.database or "", safe="/:")
    return sa.make_url(f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true")


def reader_engine(url: sa.URL, statement_timeout: float) -> sa.Engine:
    """An engine for short read-only polls of the scheduler's database."""
    url = normalize_url(url)  # idempotent: config already did it, with a one-line error
    backend = url.get_backend_name()
    if backend == "sqlite":
        # The busy timeout only matters in rollback-journal mode, while a writer commits.
        engine = sa.create_engine(
            sqlite_readonly_url(url),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"timeout": min(statement_timeout, 2.0)},
        )
        sa.event.listen(engine, "connect", _lenient_text)
        return engine
    connect_timeout = max(1, int(statement_timeout))
    options: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        "pool_size": 1,
        "max_overflow": 2,
        "pool_pre_ping": True,
        "pool_recycle": 300,
    }
    if backend == "postgresql":
        timeout_ms = int(statement_timeout * 1000)
        options["connect_args"] = {
            "connect_timeout": connect_timeout,
            "application_name": "jobstore-exporter",
            "options": f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}",
            # A partitioned network never answers; these make the kernel give up on the socket
            # instead of leaving a poll blocked in recv() forever.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": timeout_ms + 10_000,
        }
        return sa.create_engine(url, **options)
    if backend in {"mysql", "mariadb"}:
        options["connect_args"] = {
            "connect_timeout": connect_timeout,
            "read_timeout": connect_timeout + 5,
        }
        engine = sa.create_engine(url, **options)
        sa.event.listen(engine, "connect", _mysql_session_setup(statement_timeout))
        return engine
    return sa.create_engine(url, **options)


LENIENT_TEXT = functools.partial(str, encoding="utf-8", errors="backslashreplace")
"""SQLite's text as str, invalid UTF-8 shown as ``\\xNN`` escapes (a C call per value, no
Python frame): the same text ``text.decode_id`` makes of an invalid job id, so a history row
still names the job it belongs to."""


def _lenient_text(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.text_factory = LENIENT_TEXT


def _mysql_session_setup(statement_timeout: float) -> Any:
    """Make every MySQL/MariaDB session read-only and bound each statement's run time."""

    def setup(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
            if "mariadb" in version.lower():
                cursor.execute(f"SET SESSION max_statement_time = {float(statement_timeout)}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {int(statement_timeout * 1000)}")
        finally:
            cursor.close()

    return setup


def qualified_table(
    name: str, schema: str | None, columns: list[sa.Column[Any]] | None = None
) -> sa.Table:
    """A lightweight Table for reading: only the columns we select, no reflection round-trip."""
    return sa.Table(name, sa.MetaData(), *(columns or []), schema=schema)


def describe_error(exc: BaseException, display_url: str, secrets: tuple[str, ...] = ()) -> str:
    """One line about a database failure: the driver's first line, with secrets scrubbed."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
    if isinstance(exc, sa.exc.NoSuchTableError):
        text = f"table {text} not found"
    return scrub(f"{text} ({display_url})", secrets)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Each secret (and its URL-quoted forms), URL passwords and ``password=`` as ``***``."""
    return redact(text, *secrets)
