"""Whether a SQLite job store may have changed since the last poll, without reading its rows.

SQLite counts commits per database: ``PRAGMA data_version`` on one connection returns a new value
whenever another connection committed since that connection last asked. Asked on a kept
connection, it answers "nothing was written" for the price of one pragma, so a steady poll skips
the SELECT, and with it the digest of every row (a Python call per row that takes the
interpreter lock from the event loop serving scrapes each time).

The kept connection is opened exactly as the reads are (the engine's own URL: read-only, URI
mode) and is never inside a transaction between calls: the pragma runs in autocommit and holds
no lock afterwards, so the scheduler's writes never wait for it. The file's identity, size and
modification time are part of the version too, so a database replaced under the same path (a
restore, a new inode) is read again even though a connection to the old file would see no
commit. Any error (a busy writer, a missing file) answers "unknown": the poll then reads the
table as it always did.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Hashable
from typing import Any

import sqlalchemy as sa


class DataVersion:
    """The version of one SQLite database file, read on a connection kept between polls."""

    def __init__(self, engine: sa.Engine) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._args: list[Any] = list(args)
        # One thread polls at a time (the poller's lock), not always the same one; no busy
        # wait: a writer mid-commit means "unknown", and the poll reads the table instead.
        self._kwargs: dict[str, Any] = {
            **kwargs,
            "check_same_thread": False,
            "isolation_level": None,
            "timeout": 0.0,
        }
        filename = str(self._args[0]) if self._args else ""
        if kwargs.get("uri") and filename.startswith("file:"):
            filename = urllib.parse.unquote(filename.removeprefix("file:").split("?", 1)[0])
        self._path = filename
        self._connection: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) the connection has open
        self._lock = threading.Lock()  # the connection is used by one thread at a time

    def current(self) -> Hashable | None:
        """A value that differs from the last one whenever the database may have changed, or
        None when that cannot be told (then the caller reads the table)."""
        if not self._path or self._path == ":memory:":
            return None
        with self._lock:
            try:
                found = os.stat(self._path)
                file = (found.st_dev, found.st_ino)
                if file != self._file:  # a first call, or a new file under the path
                    self._close()
                if self._connection is None:
                    # Opened after the stat: if the file is replaced in between, the next call
                    # sees another inode than the one noted here and opens it again.
                    self._connection = sqlite3.connect(*self._args, **self._kwargs)
                    self._file = file
                row = self._connection.execute("PRAGMA data_version").fetchone()
            except (OSError, sqlite3.Error):
                self._close()  # a new connection next time
                return None
        return (*file, found.st_size, found.st_mtime_ns, row[0])

    def close(self) -> None:
        """Close the kept connection (a poller that stops). It waits for a question under way
        on the poll thread: a SQLite connection closed while another thread uses it crashes
        the process (a stop during the first poll did, one time in two)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        connection, self._connection, self._file = self._connection, None, None
        if connection is not None:
            connection.close()


def data_version(connection: sa.Connection) -> DataVersion | None:
    """The commit counter for the database behind ``connection``, on SQLite files only."""
    if connection.dialect.name != "sqlite":
        return None
    return DataVersion(connection.engine)
