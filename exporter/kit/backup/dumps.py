"""The per-backend dumps (SQLite online backup, pg_dump -Fc, mariadb-dump) and the tools they run,
with passwords passed in the environment and scrubbed from their messages.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

import sqlalchemy as sa

from exporter.kit.backup.model import _DISK_FULL, _LIBPQ_ENV, _PACKAGES, BackupError, MissingTool
from exporter.kit.engine import describe_url, redact
from exporter.kit.rotation import rotation_victims as rotation_victims
from exporter.shared.backup_files import (
    BackupFile as BackupFile,  # re-exported: callers use kit.backup
)
from exporter.shared.backup_files import list_backups as list_backups

log = logging.getLogger("exporter.kit.backup")


def _dump_sqlite(url: sa.URL, target: Path, timeout: float) -> None:
    source = Path(url.database or "")
    if not source.is_file():
        raise BackupError(f"SQLite database {source} not found: check database_url")
    # mode=rw: never create an empty database where the real one is missing.
    uri = f"file:{urllib.parse.quote(str(source.resolve()))}?mode=rw"
    src = sqlite3.connect(uri, uri=True, timeout=min(timeout, 60.0))
    try:
        dst = sqlite3.connect(str(target))
        try:
            # One step: a single read transaction, so the copy is one consistent snapshot. In WAL
            # mode (what create_scheduler sets) the scheduler's writes go on meanwhile.
            src.backup(dst)
            # The copy inherits WAL mode; a backup file must stand alone (no -wal/-shm beside it).
            dst.execute("PRAGMA journal_mode=DELETE").fetchall()
        finally:
            dst.close()
    finally:
        src.close()


def _dump_postgresql(url: sa.URL, target: Path, timeout: float) -> None:
    tool = _find_tool("pg_dump")
    env = os.environ.copy()
    for key, given in url.query.items():
        name = _LIBPQ_ENV.get(key)
        if name is not None:
            env[name] = given if isinstance(given, str) else given[-1]
    for name, value in (
        ("PGHOST", url.host),
        ("PGPORT", str(url.port) if url.port else None),
        ("PGUSER", url.username),
        ("PGDATABASE", url.database),
        ("PGPASSWORD", str(url.password) if url.password else None),
    ):
        if value:
            env[name] = value
    env.setdefault("PGCONNECT_TIMEOUT", "30")
    env.setdefault("PGAPPNAME", "jobstore-exporter backup")
    argv = [
        tool,
        "--format=custom",
        "--no-password",  # never wait for a prompt at 3 AM
        "--lock-wait-timeout=60000",
        f"--file={target}",
    ]
    _check_dump(_run(argv, env, timeout, "pg_dump"), "pg_dump", url)


def _dump_mysql(url: sa.URL, target: Path, timeout: float) -> None:
    tool = _find_tool("mariadb-dump", "mysqldump")
    name = Path(tool).name
    if not url.database:
        raise BackupError("database_url names no database: add /<database> to it")
    env = os.environ.copy()
    if url.password:
        env["MYSQL_PWD"] = str(url.password)
    argv = [
        tool,
        "--single-transaction",
        "--quick",
        "--skip-lock-tables",
        "--hex-blob",
        "--no-tablespaces",
        "--default-character-set=utf8mb4",
        f"--result-file={target}",
    ]
    socket = url.query.get("unix_socket")
    if socket:
        argv.append(f"--socket={socket if isinstance(socket, str) else socket[-1]}")
    else:
        argv += ["--protocol=TCP", f"--host={url.host or 'localhost'}"]
        if url.port:
            argv.append(f"--port={url.port}")
    if url.username:
        argv.append(f"--user={url.username}")
    argv.append(url.database)
    _check_dump(_run(argv, env, timeout, name), name, url)


_DUMPERS: Mapping[str, Callable[[sa.URL, Path, float], None]] = {
    "sqlite": _dump_sqlite,
    "postgresql": _dump_postgresql,
    "mysql": _dump_mysql,
}


def _find_tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    _missing(" or ".join(names), _PACKAGES[names[0]])


def _missing(names: str, package: str) -> NoReturn:
    raise MissingTool(
        f"{names} not found on PATH: install the Debian package {package} "
        f"(apt-get install {package}) where the scheduler runs"
    )


def _run(
    argv: list[str], env: dict[str, str], timeout: float, what: str
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(
            f"{what} did not finish within {timeout:.0f} s: check the database server, or raise "
            "the backup timeout"
        ) from None
    except FileNotFoundError:
        _missing(Path(argv[0]).name, _PACKAGES.get(Path(argv[0]).name, "its package"))


def _check_dump(result: subprocess.CompletedProcess[str], what: str, url: sa.URL) -> None:
    if result.returncode == 0:
        return
    reason = _tool_message(result.stderr, str(url.password) if url.password else None)
    if _DISK_FULL.search(result.stderr):  # reported by _explain once the temp file is gone
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if "server version mismatch" in result.stderr:
        raise MissingTool(
            f"{what} is older than the server ({reason}): install the postgresql-client "
            "package of the server's major version"
        )
    raise BackupError(f"{what} failed (exit {result.returncode}) for {describe_url(url)}: {reason}")


def _tool_message(stderr: str, secret: str | None = None) -> str:
    lines = [" ".join(line.split()) for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no error output"
    chosen = next((line for line in lines if "error" in line.lower()), lines[-1])
    return redact(chosen[:400], secret)
