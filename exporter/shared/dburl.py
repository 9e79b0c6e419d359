"""Database URLs as the app writes them, turned into URLs our shipped drivers open, and redacted.

The sidecar and the scheduler-side kit are usually handed the app's own ``DATABASE_URL``, which
names whatever driver the app uses: ``postgresql+asyncpg://`` in an async app,
``postgresql+psycopg2://`` in an older one, ``mysql+aiomysql://``... Both halves only need a
synchronous connection, and the exporter ships one driver per dialect (psycopg 3, PyMySQL, the
standard library's sqlite3), so every known driver of a dialect is replaced by the shipped one
instead of failing on a driver that is not installed or cannot run synchronously. An unknown
scheme is one line that lists the supported ones.

Passwords hide in more places than ``user:password@``: libpq and the MySQL drivers also take
``?password=`` (and ``?sslpassword=``, a client key's passphrase) from the query. A query
password becomes the URL's own password, so every consumer that already keeps the password out
of sight (``render_as_string(hide_password=True)``, the backup job's password-less kwargs)
handles it, and the remaining credential-bearing parameters are masked by :func:`display_url`
and listed by :func:`url_secrets` for scrubbing.

This module imports nothing but SQLAlchemy, so the kit can use it without importing the sidecar.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

SUPPORTED_SCHEMES = "postgresql://, postgres://, mysql://, mariadb://, sqlite:///"

_SHIPPED = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "sqlite": "sqlite",
}
"""Dialect (the scheme before any ``+driver``) -> the URL scheme of the driver we ship."""

_KNOWN_DRIVERS = {
    "postgresql": {"psycopg", "psycopg_async", "psycopg2", "psycopg2cffi", "asyncpg", "pg8000"},
    "mysql": {"pymysql", "mysqldb", "aiomysql", "asyncmy", "mysqlconnector", "mariadbconnector"},
    "sqlite": {"pysqlite", "aiosqlite"},
}
_KNOWN_DRIVERS["postgres"] = _KNOWN_DRIVERS["postgresql"]
_KNOWN_DRIVERS["mariadb"] = _KNOWN_DRIVERS["mysql"]

_SHIPPED_DRIVER_NAMES = {
    "postgresql": "psycopg 3",
    "mysql": "PyMySQL",
    "mariadb": "PyMySQL",
    "sqlite": "sqlite3",
}

_QUERY_PASSWORDS = ("password", "passwd")
"""Query parameters that carry the login password itself (libpq; the MySQL drivers)."""

_SECRET_KEY = re.compile(r"(?i)pass(?:word|wd|phrase)|secret|token|^pwd$")
"""A query parameter whose value is a credential: password, sslpassword, passwd, ..."""

# `scheme://user:password@` as it may appear in any text (an unparsable URL, a driver message).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@\s]*@")
# `password=...` in a URL query or a libpq conninfo string quoted in an error message.
_KEYWORD_SECRET = re.compile(
    r"(?P<head>\b(?:ssl)?pass(?:word|wd)\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^&\s;,)]+)",
    re.IGNORECASE,
)


class UrlError(ValueError):
    """A database URL we cannot use, worded as one line naming the fix (never the password)."""


@dataclass(frozen=True, slots=True)
class NormalizedUrl:
    url: sa.URL
    replaced_driver: str | None
    """The driver the given URL named, when another one (ours) will be used instead."""

    @property
    def driver_note(self) -> str | None:
        """One line for the log saying which driver is used instead of the URL's, if any."""
        if self.replaced_driver is None:
            return None
        shipped = _SHIPPED_DRIVER_NAMES[self.url.get_backend_name()]
        return (
            f"the URL names the {self.replaced_driver} driver; "
            f"reading with {shipped}, the driver shipped with jobstore-exporter"
        )


def parse_url(text: str | sa.URL) -> sa.URL:
    """``sa.make_url`` whose error never repeats the password."""
    try:
        return sa.make_url(text)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises several types; its text quotes the URL
        # Not even a redacted echo: a URL too broken to parse may hide its password anywhere.
        raise UrlError(
            "not a database URL; expected e.g. postgresql://user@host/db, "
            "mysql://user@host/db or sqlite:////data/app.sqlite"
        ) from None


def normalize(text: str | sa.URL) -> NormalizedUrl:
    """Parse a URL and point it at the driver we ship for its dialect.

    Raises :class:`UrlError` for an unknown scheme or driver, listing the supported ones.
    """
    url = parse_url(text)
    dialect, _, driver = url.drivername.partition("+")
    dialect = dialect.lower()
    driver = driver.lower()
    if dialect not in _SHIPPED:
        raise UrlError(
            f"unsupported database URL scheme {url.drivername + '://'!r}; "
            f"supported: {SUPPORTED_SCHEMES} (any of their usual drivers may be named, "
            "e.g. postgresql+asyncpg://)"
        )
    if driver and driver not in _KNOWN_DRIVERS[dialect]:
        known = ", ".join(sorted(_KNOWN_DRIVERS[dialect]))
        raise UrlError(
            f"unknown driver {driver!r} in database URL scheme {url.drivername + '://'!r}; "
            f"known drivers for {dialect}: {known}"
        )
    shipped = _SHIPPED[dialect]
    replaced = driver if driver and driver not in {"psycopg", "pymysql", "pysqlite"} else None
    url = url.set(drivername=shipped)
    if dialect in {"postgresql", "postgres"}:
        url = _libpq_query(url, driver)
    return NormalizedUrl(_query_password(url), replaced)


def normalize_url(text: str | sa.URL) -> sa.URL:
    """:func:`normalize`, when the caller does not log the driver replacement."""
    return normalize(text).url


def _query_password(url: sa.URL) -> sa.URL:
    """``?password=`` becomes the URL's password (when it has none), so it is hidden as one."""
    for key in _QUERY_PASSWORDS:
        value = url.query.get(key)
        if value is None:
            continue
        text = value if isinstance(value, str) else value[-1]
        url = url.difference_update_query([key])
        if url.password is None:
            url = url.set(password=text)
    return url


_ASYNCPG_SSL = {
    "true": "require",
    "1": "require",
    "false": "disable",
    "0": "disable",
}


def _libpq_query(url: sa.URL, driver: str) -> sa.URL:
    """asyncpg spells libpq's ``sslmode`` as ``ssl``; psycopg would reject the unknown key."""
    if driver != "asyncpg" or "ssl" not in url.query:
        return url
    value = url.query["ssl"]
    mode = value if isinstance(value, str) else value[-1]
    url = url.difference_update_query(["ssl"])
    if "sslmode" in url.query:
        return url
    return url.update_query_dict({"sslmode": _ASYNCPG_SSL.get(mode.lower(), mode)})


def display_url(url: sa.URL) -> str:
    """The URL for logs, pages and errors: password and credential query values as ``***``."""
    masked = {
        key: ("***" if _SECRET_KEY.search(key) else value) for key, value in url.query.items()
    }
    if masked != dict(url.query):
        url = url.set(query=masked)
    return url.render_as_string(hide_password=True)


def secret_query(url: sa.URL) -> dict[str, Any]:
    """The URL's query parameters whose values are credentials (``sslpassword``...), by key."""
    return {key: value for key, value in url.query.items() if _SECRET_KEY.search(key)}


def url_secrets(url: sa.URL) -> tuple[str, ...]:
    """Every credential in the URL: the password and the credential query values."""
    found: list[str] = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if _SECRET_KEY.search(key):
            found.extend([value] if isinstance(value, str) else list(value))
    return tuple(dict.fromkeys(s for s in found if s))


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with each secret (plain or URL-quoted), URL passwords and ``password=`` masked."""
    for secret in secrets:
        if secret:
            for form in dict.fromkeys(
                (
                    secret,
                    urllib.parse.quote(secret, safe=""),
                    urllib.parse.quote_plus(secret, safe=""),
                )
            ):
                text = text.replace(form, "***")
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return _KEYWORD_SECRET.sub(r"\g<head>***", text)
