"""What went wrong reading a store, in words that say what is true and what to change.

The driver's own text is accurate but unhelpful to an operator: "relation apscheduler_jobs does
not exist" under "unreachable" sends people to the network, and ``(1045, "Access denied ...")``
does not say which of three password settings was used. Two failures are configuration
mistakes and get their own line:

* the database answered but the table is not where the settings say: name the table and the
  schema, the flags that change them, and any table that looks like an APScheduler job table
  (columns ``id``, ``next_run_time``, ``job_state``) elsewhere in the database;
* the server refused the login: name the user, the host and the setting the password came from.

Everything else keeps the driver's first line, secrets scrubbed (see ``db.describe_error``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlalchemy as sa

from exporter.sidecar.config import StoreConfig
from exporter.sidecar.db import describe_error, scrub

TABLE_MISSING = "Job store table missing"
LOGIN_REFUSED = "Database login refused"
"""Headlines `check` prints instead of "Job store unreachable" for these two mistakes."""

_SYSTEM_SCHEMAS = {
    "information_schema",
    "pg_catalog",
    "pg_toast",
    "mysql",
    "performance_schema",
    "sys",
    "temp",
}
_JOB_COLUMNS = {"id", "next_run_time", "job_state"}
_MAX_SCHEMAS = 50
_MAX_CANDIDATES = 5

_TABLE_SETTINGS = {
    "jobs": ("--jobs-table", "jobs_table"),
    "history": ("--history-table", "history_table"),
}


def explain(exc: BaseException, store: StoreConfig, engine: sa.Engine, source: str) -> str:
    """One line about a failed read of ``source`` (jobs, history...), secrets scrubbed."""
    if source in _TABLE_SETTINGS and is_missing_table(exc):
        table = store.jobs_table if source == "jobs" else store.history_table
        return missing_table(store, engine, table, *_TABLE_SETTINGS[source])
    if is_login_refused(exc):
        return login_refused(exc, store)
    return describe_error(exc, store.display_url, store.secrets)


def headline(error: str) -> str | None:
    """The headline for an error line made here, or None for any other error."""
    if error.startswith("the database answered, but has no table"):
        return TABLE_MISSING
    if error.startswith("the database refused"):
        return LOGIN_REFUSED
    return None


def is_missing_table(exc: BaseException) -> bool:
    original = getattr(exc, "orig", None) or exc
    if getattr(original, "sqlstate", None) == "42P01":  # psycopg: undefined_table
        return True
    args = getattr(original, "args", ())
    if args and args[0] == 1146:  # MySQL / MariaDB: ER_NO_SUCH_TABLE
        return True
    return isinstance(original, sqlite3.OperationalError) and str(original).startswith(
        "no such table"
    )


def is_login_refused(exc: BaseException) -> bool:
    original = getattr(exc, "orig", None) or exc
    if getattr(original, "sqlstate", None) in {"28P01", "28000"}:
        return True
    args = getattr(original, "args", ())
    if args and args[0] in {1045, 1698}:  # access denied for user / without a password
        return True
    text = str(original)
    return "password authentication failed" in text or "no password supplied" in text


def missing_table(store: StoreConfig, engine: sa.Engine, table: str, flag: str, key: str) -> str:
    schema, candidates = _look_around(engine, store.schema, table)
    message = (
        f"the database answered, but has no table {table!r} in schema {schema!r} "
        f"({store.display_url}); set {flag} / --schema (or {key} / schema) to where the "
        "scheduler keeps it"
    )
    if candidates:
        message += "; tables that look like APScheduler job tables: " + ", ".join(candidates)
    elif key == "jobs_table":
        message += "; no table in this database looks like an APScheduler job table"
    return scrub(message, store.secrets)


def _look_around(engine: sa.Engine, schema: str | None, table: str) -> tuple[str, list[str]]:
    """The schema we looked in, and ``schema.table`` names with the job table's columns."""
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            default = inspector.default_schema_name or ""
            schemas = [
                name
                for name in inspector.get_schema_names()
                if name.lower() not in _SYSTEM_SCHEMAS and not name.startswith("pg_")
            ][:_MAX_SCHEMAS]
            candidates: list[str] = []
            for name in schemas:
                columns = inspector.get_multi_columns(schema=name)
                for (_, found), cols in sorted(columns.items(), key=lambda item: item[0][1]):
                    if {c["name"].lower() for c in cols} >= _JOB_COLUMNS:
                        if name == (schema or default) and found == table:
                            continue
                        shown = found if name == default else f"{name}.{found}"
                        candidates.append(shown)
    except Exception:  # noqa: BLE001 - the hint is a courtesy; the missing table is the news
        return schema or "(default)", []
    return schema or default, candidates[:_MAX_CANDIDATES]


def login_refused(exc: BaseException, store: StoreConfig) -> str:
    url = store.url
    where = url.host or "localhost"
    if url.port:
        where += f":{url.port}"
    if store.password_source is None:
        password = "no password was given; set JOBSTORE_EXPORTER_DB_PASSWORD or --db-password-file"
    else:
        password = f"the password came from {store.password_source}"
    reason = "password authentication failed"
    original: Any = getattr(exc, "orig", None) or exc
    if getattr(original, "args", ()) and original.args[0] in {1045, 1698}:
        reason = "access denied"
    return scrub(
        f"the database refused the login of user {url.username!r} at {where} ({reason}): "
        f"{password}; check the user and its password",
        store.secrets,
    )
