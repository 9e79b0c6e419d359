"""The daily database backup: a consistent copy, verified before it gets its final name.

One code path serves the `database_backup` job and `jobstore-exporter backup run`:

1. a consistent copy into a hidden temp file in `backup_dir` (SQLite: the online backup API,
   one read transaction, while the scheduler keeps writing; PostgreSQL: `pg_dump
   --format=custom`; MariaDB/MySQL: `mariadb-dump` or `mysqldump --single-transaction`);
2. fsync of the file, then verification of the copy (SQLite `PRAGMA integrity_check`;
   `pg_restore --list` plus a full read of every data block; the dump's statements are complete
   and it ends with the `-- Dump completed` trailer);
3. an atomic rename to `<db>_<YYYYmmddTHHMMSSZ>.<ext>` (UTC, the time the copy started), fsync
   of the directory;
4. the file is recorded in the directory's manifest (`.<db>.backups.json`: name, size,
   modification time, verification), which is what makes it a *good* backup for rotation, the
   sidecar and `backup list` (see `exporter.backup_files`);
5. only then rotation: the newest `keep` good backups of this database stay, optionally minus
   those older than `max_age_days`; the newest is never deleted. Files the manifest does not list
   (foreign, planted, dated in the future) never count among those kept and are never touched;
   each run logs them.

A failure at any step deletes the temp file and raises :class:`BackupError`, one line that names
the fix, so the history recorder stores a `failed` run with that reason.

Passwords never reach the job store: the job's kwargs hold the URL without its password and say
where the password comes from at run time (an environment variable, a file, or this process's
memory, filled again by `register_backup_job()` at every start). Child processes get it through
their environment (`PGPASSWORD`, `MYSQL_PWD`), never through argv.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.backup_files import EXTENSIONS, KINDS_BY_EXT, backup_name
from exporter.backup_files import BackupFile as BackupFile  # re-exported: callers use kit.backup
from exporter.backup_files import list_backups as list_backups
from exporter.kit.engine import describe_url, normalize_url, redact
from exporter.kit.rotation import forget, fsync_dir, record, rotate, warn_untrusted
from exporter.kit.rotation import rotation_victims as rotation_victims

log = logging.getLogger("exporter.kit.backup")

JOB_ID = "database_backup"
JOB_NAME = "Daily Database Backup"
JOB_FUNC = "exporter.kit.backup:run_backup"
"""The job refers to its function by name: the row in the job store never pickles code."""
BACKUP_DIR_ENV = "JOBSTORE_EXPORTER_BACKUP_DIR"
"""`create_scheduler()` installs the backup job when this is set (the sidecar reads it too)."""

STALE_TEMP_AFTER = 86400.0
"""Temp files of a crashed run older than this (seconds) are removed by the next run."""

BackupSetting = bool | str | os.PathLike[str] | Mapping[str, Any] | None
"""What `create_scheduler(backup=...)` accepts; see `install_backup_job`."""


_DISK_FULL = re.compile(
    r"no space left on device|disk is full|err(?:no|code)?[:= ]*28\b|error 28\b", re.IGNORECASE
)
_PACKAGES = {
    "pg_dump": "postgresql-client",
    "pg_restore": "postgresql-client",
    "mariadb-dump": "mariadb-client",
}
# libpq connection parameters that may appear in a URL's query, and their environment names.
_LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslpassword": "PGSSLPASSWORD",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
}


class BackupError(Exception):
    """A backup that did not happen, worded as one line that says what to fix."""


class MissingTool(BackupError):
    """A dump or restore program is not installed (the message names the Debian package)."""


class UnusableBackup(Exception):
    """`verify_backup` cannot judge the file: missing, unreadable, or of an unknown format."""


@dataclass(frozen=True)
class Verification:
    ok: bool
    kind: str  # sqlite | postgresql | mysql
    detail: str


@dataclass(frozen=True)
class BackupResult:
    path: Path
    kind: str
    size: int
    taken_at: datetime
    duration: float
    verification: str
    removed: tuple[Path, ...] = ()


# --------------------------------------------------------------------------------------------
# Names (rotation and the manifest: exporter.kit.rotation)
# --------------------------------------------------------------------------------------------


def backend_kind(url: sa.URL) -> str:
    """`sqlite`, `postgresql` or `mysql` (MariaDB included); BackupError for anything else."""
    backend = url.get_backend_name()
    if backend == "mariadb":
        return "mysql"
    if backend not in EXTENSIONS:
        raise BackupError(
            f"cannot back up a {backend} database: supported are SQLite, PostgreSQL and "
            "MariaDB/MySQL"
        )
    return backend


def backup_prefix(url: sa.URL) -> str:
    """The `<db>` part of backup names: the SQLite file's stem or the database's name."""
    raw = Path(url.database or "").stem if backend_kind(url) == "sqlite" else url.database or ""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).lstrip("._-")
    return cleaned or "database"


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


def detect_kind(path: Path) -> str:
    """The kind of a backup file, by its extension or else by its first bytes."""
    ext = path.suffix.lstrip(".").lower()
    if ext in KINDS_BY_EXT:
        return KINDS_BY_EXT[ext]
    if ext == "db":
        return "sqlite"
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise UnusableBackup(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if head.startswith(b"PGDMP"):
        return "postgresql"
    if re.search(rb"^-- (MariaDB|MySQL) dump", head, re.MULTILINE):
        return "mysql"
    raise UnusableBackup(
        f"{path}: not a backup this tool knows (expected a .sqlite, .dump or .sql file)"
    )


def verify_backup(
    path: str | os.PathLike[str], kind: str | None = None, *, timeout: float = 3600.0
) -> Verification:
    """Check a backup file. `ok=False` means corrupt or incomplete.

    Raises UnusableBackup when the file cannot be judged (missing, unreadable, unknown format)
    and MissingTool when `pg_restore` is needed but not installed.
    """
    file = Path(path)
    try:
        info = file.stat()
    except OSError as exc:
        raise UnusableBackup(f"cannot read {file}: {exc.strerror or exc}") from None
    if not file.is_file():
        raise UnusableBackup(f"{file} is not a regular file")
    kind = kind or detect_kind(file)
    if info.st_size == 0:
        return Verification(False, kind, "empty file (0 bytes): a failed backup")
    try:
        if kind == "sqlite":
            return _verify_sqlite(file)
        if kind == "postgresql":
            return _verify_pg_archive(file, timeout)
        if kind == "mysql":
            return _verify_sql_dump(file)
    except PermissionError as exc:
        raise UnusableBackup(f"cannot read {file}: {exc.strerror or exc}") from None
    raise UnusableBackup(f"unknown backup kind {kind!r}")


def _verify_sqlite(path: Path) -> Verification:
    with path.open("rb") as handle:
        header = handle.read(16)
    if header != b"SQLite format 3\x00":
        return Verification(False, "sqlite", "not a SQLite database (bad header)")
    # immutable=1: no locks, no journal, nothing written next to the file.
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
            tables = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        return Verification(False, "sqlite", f"integrity_check failed: {exc}")
    if problems != ["ok"]:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return Verification(False, "sqlite", f"integrity_check: {problems[0]}{more}")
    return Verification(True, "sqlite", f"integrity_check ok, {tables} tables")


def _verify_pg_archive(path: Path, timeout: float) -> Verification:
    with path.open("rb") as handle:
        if handle.read(5) != b"PGDMP":
            return Verification(False, "postgresql", "not a pg_dump custom-format archive")
    tool = _find_tool("pg_restore")
    listing = _run([tool, "--list", str(path)], os.environ.copy(), timeout, "pg_restore --list")
    if listing.returncode != 0:
        reason = _tool_message(listing.stderr)
        return Verification(False, "postgresql", f"pg_restore --list failed: {reason}")
    entries = [line for line in listing.stdout.splitlines() if line and not line.startswith(";")]
    with_data = sum(1 for line in entries if " TABLE DATA " in line)
    # The table of contents sits at the start of the file: a truncated archive still lists.
    # Reading every data block (restoring into /dev/null) is what finds a torn file.
    full = _run([tool, "--file=/dev/null", str(path)], os.environ.copy(), timeout, "pg_restore")
    if full.returncode != 0:
        reason = _tool_message(full.stderr)
        return Verification(False, "postgresql", f"pg_restore cannot read the archive: {reason}")
    return Verification(
        True,
        "postgresql",
        f"pg_restore --list ok, {len(entries)} entries, {with_data} tables with data, "
        "all data readable",
    )


def _verify_sql_dump(path: Path) -> Verification:
    def bad(reason: str) -> Verification:
        return Verification(False, "mysql", reason)

    header = False
    delimiter = ";"
    in_statement = False
    tables = inserts = 0
    last = ""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            if "\x00" in line:
                return bad(f"NUL byte at line {number}: the file is damaged")
            last = line
            if not in_statement:
                if line.startswith("--"):
                    header = header or (
                        number <= 5 and re.match(r"-- (MariaDB|MySQL) dump", line) is not None
                    )
                    continue
                if line.startswith("/*") and line.endswith("*/"):
                    continue  # e.g. MariaDB's sandbox-mode line
                match = re.match(r"DELIMITER\s+(\S+)$", line, re.IGNORECASE)
                if match:
                    delimiter = match[1]
                    continue
                upper = line[:12].upper()
                tables += upper.startswith("CREATE TABLE")
                inserts += upper.startswith("INSERT INTO")
            in_statement = not line.endswith(delimiter)
    if not header:
        return bad("no mariadb-dump/mysqldump header: not a dump of this tool")
    if not last.startswith("-- Dump completed"):
        return bad("the '-- Dump completed' trailer is missing: the dump was cut short")
    if in_statement:
        return bad("the last statement is incomplete")
    return Verification(
        True, "mysql", f"complete dump, {tables} tables, {inserts} INSERT statements"
    )


# --------------------------------------------------------------------------------------------
# Taking a backup
# --------------------------------------------------------------------------------------------


def backup_database(
    database_url: str | sa.URL,
    backup_dir: str | os.PathLike[str],
    *,
    keep: int = 7,
    max_age_days: float | None = None,
    timeout: float = 3600.0,
    lock_timeout: float = 3600.0,
) -> BackupResult:
    """Take one verified backup of `database_url` into `backup_dir`, then rotate.

    Raises BackupError (one line naming the fix) and leaves no partial file when anything fails.
    Runs of the same database into the same directory are serialized by a lock file
    (`.<db>.backup-lock`), so two schedulers firing the same job never interleave.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1 (rotation never deletes the newest backup)")
    url = normalize_url(database_url)
    kind = backend_kind(url)
    if kind == "sqlite" and url.database in (None, "", ":memory:"):
        raise BackupError("an in-memory SQLite database has no file to back up")
    if kind == "sqlite" and not Path(url.database or "").is_file():
        raise BackupError(f"SQLite database {url.database} not found: check database_url")
    secret = str(url.password) if url.password else None
    directory = Path(backup_dir).expanduser()
    prefix, ext = backup_prefix(url), EXTENSIONS[kind]
    started = time.monotonic()
    _prepare_directory(directory)
    with _directory_lock(directory, prefix, lock_timeout):
        _remove_stale_temps(directory, prefix)
        taken_at = _free_stamp(directory, prefix, ext)
        final = directory / backup_name(prefix, taken_at, ext)
        temp = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
        renamed = False
        try:
            _create_private(temp)
            _DUMPERS[kind](url, temp, timeout)
            _fsync_file(temp)
            try:
                check = verify_backup(temp, kind, timeout=timeout)
            except UnusableBackup as exc:
                raise BackupError(f"cannot verify the new backup: {exc}") from None
            if not check.ok:
                raise BackupError(
                    f"the new backup failed verification ({check.detail}); it was deleted. "
                    "Check the database server's log and retry"
                )
            if final.exists():  # only a run that ignores the lock could have made it
                raise BackupError(f"{final} appeared while the backup ran; retry")
            os.rename(temp, final)
            renamed = True
            fsync_dir(directory)
            size = final.stat().st_size
            record(directory, prefix, final, check.detail)
        except BaseException as exc:
            _discard(temp)
            if renamed:  # not recorded in the manifest: it would only sit there untrusted
                _discard(final)
            if not isinstance(exc, Exception):
                raise
            known = isinstance(exc, BackupError | OSError | sqlite3.Error)
            raise _explain(exc, directory, secret) from (None if known else exc)
        removed = rotate(
            directory, prefix, ext, keep=keep, max_age_days=max_age_days, protect=final
        )
        forget(directory, prefix, removed)
        warn_untrusted(directory, prefix)
    duration = time.monotonic() - started
    log.info(
        "database backup of %s written to %s (%s, %s) in %.1f s%s",
        describe_url(url),
        final,
        _human_size(size),
        check.detail,
        duration,
        f"; removed {len(removed)} old backups" if removed else "",
    )
    return BackupResult(final, kind, size, taken_at, duration, check.detail, removed)


def _prepare_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BackupError(
            f"backup_dir {directory} is not a directory (a file is in the way): "
            "choose a directory path"
        ) from None
    except OSError as exc:
        raise _explain(exc, directory, None) from None
    if not directory.is_dir():
        raise BackupError(f"backup_dir {directory} is not a directory: choose a directory path")


@contextlib.contextmanager
def _directory_lock(directory: Path, prefix: str, timeout: float) -> Iterator[None]:
    path = directory / f".{prefix}.backup-lock"
    try:
        # Never through a symlink: whoever planted one would have us create or lock their file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupError(
                f"backup lock file {path} is a symbolic link: remove it (the backup job creates "
                "its own lock file)"
            ) from None
        raise _explain(exc, directory, None) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackupError(
                        f"another backup of {prefix} into {directory} has held {path.name} for "
                        f"{timeout:.0f} s: check for a hung backup process"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _free_stamp(directory: Path, prefix: str, ext: str) -> datetime:
    """Now (UTC, whole seconds); waits for the next second if a backup has this name."""
    while True:
        now = datetime.now(UTC).replace(microsecond=0)
        if not (directory / backup_name(prefix, now, ext)).exists():
            return now
        time.sleep(1.0 - time.time() % 1.0 + 0.01)


def _remove_stale_temps(directory: Path, prefix: str) -> None:
    pattern = re.compile(
        rf"^\.{re.escape(prefix)}_\d{{8}}T\d{{6}}Z\.(sqlite|dump|sql)\.[0-9a-f]{{8}}\.tmp"
        r"(-journal|-wal|-shm)?$"
    )
    cutoff = time.time() - STALE_TEMP_AFTER
    with os.scandir(directory) as entries:
        for entry in entries:
            if not pattern.match(entry.name):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    log.warning("removed %s, left by a backup run that crashed", entry.path)


def _create_private(path: Path) -> None:
    """Create the temp file (0600: a backup holds the whole database), refusing to reuse one."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _discard(temp: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.unlink(f"{temp}{suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _explain(exc: Exception, directory: Path, secret: str | None) -> BackupError:
    """Any failure as a BackupError line; disk full and unwritable directory name the fix."""
    if isinstance(exc, BackupError):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _disk_full(directory)
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BackupError(
            f"backup_dir {directory} is not writable ({exc.strerror}): mount it read-write and "
            f"give the scheduler's user (uid {os.geteuid()}) write access, or choose another "
            "backup_dir"
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if _DISK_FULL.search(text):
        return _disk_full(directory)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return BackupError(redact(message[:500], secret))


def _disk_full(directory: Path) -> BackupError:
    try:
        free = f"{_human_size(shutil.disk_usage(directory).free)} free"
    except OSError:
        free = "free space unknown"
    return BackupError(
        f"no space left on the device holding {directory} ({free}): free space there, lower "
        "keep, or move backup_dir to a larger volume"
    )


def _human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


# --- per backend -------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------

_passwords_lock = threading.Lock()
_process_passwords: dict[str, str] = {}
"""Passwords `register_backup_job()` kept in this process, by the job's password-less URL."""


def _public_url(url: sa.URL) -> str:
    """The URL without its password, as text (`URL.set(password=None)` would keep it)."""
    url = normalize_url(url)
    bare = sa.URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    return bare.update_query_dict(dict(url.query)).render_as_string(hide_password=False)


def run_backup(
    *,
    database_url: str,
    backup_dir: str,
    keep: int = 7,
    max_age_days: float | None = None,
    password_env: str | None = None,
    password_file: str | None = None,
    password_in_process: bool = False,
    timeout: float = 3600.0,
) -> str:
    """The `database_backup` job: `backup_database()` with the password looked up at run time.

    Returns the new file's path; raises BackupError (after logging it as one line) on failure.
    """
    try:
        url = normalize_url(database_url)
        password = _job_password(url, password_env, password_file, password_in_process)
        if password is not None:
            url = url.set(password=password)
        result = backup_database(
            url, backup_dir, keep=keep, max_age_days=max_age_days, timeout=timeout
        )
    except (BackupError, ValueError) as exc:
        log.error("database backup failed: %s", exc)
        raise
    return str(result.path)


def _job_password(
    url: sa.URL, env_name: str | None, file_name: str | None, in_process: bool
) -> str | None:
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise BackupError(
                f"cannot read the database password file {file_name}: {exc.strerror or exc}"
            ) from None
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise BackupError(
                f"environment variable {env_name} (the database password) is not set in the "
                "scheduler's process"
            )
        return value
    if not in_process:
        return None
    key = _public_url(url)
    with _passwords_lock:
        known = _process_passwords.get(key)
    if known is not None:
        return known
    fallback = os.environ.get("DATABASE_URL")
    if fallback:
        with contextlib.suppress(ValueError):
            parsed = normalize_url(fallback)
            if parsed.password and _public_url(parsed) == key:
                return str(parsed.password)
    raise BackupError(
        "the database password is not known to this process: call register_backup_job() (or "
        "create_scheduler(backup=...)) at startup in every process that runs the scheduler, or "
        "pass password_env= or password_file="
    )


def register_backup_job(
    scheduler: BaseScheduler,
    *,
    database_url: str | sa.URL | sa.Engine,
    backup_dir: str | os.PathLike[str],
    keep: int = 7,
    hour: int | str = 2,
    minute: int | str = 0,
    every: float | None = None,
    max_age_days: float | None = None,
    password_env: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    jobstore: str = "default",
    job_id: str = JOB_ID,
    name: str = JOB_NAME,
    timezone: str = "UTC",
    misfire_grace_time: int | None = None,
    timeout: float = 3600.0,
    catch_up: bool = True,
) -> Job:
    """Install the daily backup job (`database_backup`, 02:00 UTC by default).

    The job is a cron job with `max_instances=1`, `coalesce=True` and `replace_existing=True`,
    referring to `exporter.kit.backup:run_backup` by name. Its kwargs hold the URL without its
    password; the password comes at run time from `password_file`, else the environment
    variable `password_env`, else this process's memory (kept here by this call, so call it at
    every start, as apps re-register their jobs anyway). `misfire_grace_time=None` means a late
    run still happens (once, coalesced). With `catch_up`, a run the job store shows as missed
    (its next run time passed while no scheduler ran) happens right away instead of being
    skipped by the re-registration.

    `hour` and `minute` take whatever APScheduler's cron fields take (`2`, `"*"`, `"*/5"`,
    `"1,13"`...). `every` (seconds) replaces the daily cron with an interval, for demos and
    tests that want a backup every few minutes. The log line states the schedule in force.
    """
    trigger = _backup_trigger(hour, minute, every, timezone)
    if keep < 1:
        raise ValueError("keep must be at least 1 (rotation never deletes the newest backup)")
    if max_age_days is not None and max_age_days <= 0:
        raise ValueError("max_age_days must be positive")
    url = database_url.url if isinstance(database_url, sa.Engine) else normalize_url(database_url)
    url = normalize_url(url)
    try:
        kind = backend_kind(url)
    except BackupError as exc:
        raise ValueError(str(exc)) from None
    if kind == "sqlite":
        if url.database in (None, "", ":memory:") or str(url.database).startswith("file:"):
            raise ValueError("back up a SQLite file given as sqlite:///path, not in-memory or URI")
        url = url.set(database=os.path.abspath(url.database))
    password = str(url.password) if url.password else None
    public = _public_url(url)
    in_process = bool(password) and not (password_env or password_file)
    if in_process:
        assert password is not None
        with _passwords_lock:
            _process_passwords[public] = password
    kwargs: dict[str, Any] = {
        "database_url": public,
        "backup_dir": os.path.abspath(os.fspath(backup_dir)),
        "keep": int(keep),
        "max_age_days": max_age_days,
        "password_env": password_env,
        "password_file": os.path.abspath(os.fspath(password_file)) if password_file else None,
        "password_in_process": in_process,
        "timeout": float(timeout),
    }
    extra: dict[str, Any] = {}
    if catch_up and _missed_run(scheduler, jobstore, job_id):
        extra["next_run_time"] = datetime.now(UTC)
        log.warning("the %s job missed its run while no scheduler ran: running it now", job_id)
    job = scheduler.add_job(
        JOB_FUNC,
        trigger=trigger,
        id=job_id,
        name=name,
        kwargs=kwargs,
        jobstore=jobstore,
        max_instances=1,
        coalesce=True,
        replace_existing=True,
        misfire_grace_time=misfire_grace_time,
        **extra,
    )
    log.info(
        "database backup of %s to %s %s, keeping %d%s",
        describe_url(url),
        kwargs["backup_dir"],
        describe_schedule(hour, minute, every, timezone),
        keep,
        " (password kept in this process only)" if in_process else "",
    )
    return job


def _backup_trigger(
    hour: int | str, minute: int | str, every: float | None, timezone: str
) -> BaseTrigger:
    """The job's trigger, or ValueError naming the bad argument (APScheduler's own check)."""
    if every is not None:
        if isinstance(every, bool) or not every > 0:
            raise ValueError(f"every must be a positive number of seconds, not {every!r}")
        return IntervalTrigger(seconds=float(every), timezone=timezone)
    for name, value in (("hour", hour), ("minute", minute)):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{name} must be an int or a cron expression, not {value!r}")
    try:
        return CronTrigger(hour=hour, minute=minute, timezone=timezone)
    except ValueError as exc:
        raise ValueError(f"hour={hour!r}, minute={minute!r}: {exc}") from None


def describe_schedule(
    hour: int | str, minute: int | str, every: float | None, timezone: str
) -> str:
    """The schedule in words for the log: ``daily at 02:00 UTC``, ``every 300 s``, or the cron
    fields as given (``at hour=* minute=*/5 UTC``) when they are not one time of day."""
    if every is not None:
        return f"every {float(every):g} s"
    if _plain_number(hour) and _plain_number(minute):
        return f"daily at {int(hour):02d}:{int(minute):02d} {timezone}"
    return f"at hour={hour} minute={minute} {timezone}"


def _plain_number(value: int | str) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def _missed_run(scheduler: BaseScheduler, jobstore: str, job_id: str) -> bool:
    """True when the stored job's next run time has passed (read with Core, never unpickled)."""
    store = getattr(scheduler, "_jobstores", {}).get(jobstore)
    if not isinstance(store, SQLAlchemyJobStore):
        return False
    table = store.jobs_t
    try:
        with store.engine.connect() as connection:
            value = connection.execute(
                sa.select(table.c.next_run_time).where(table.c.id == job_id)
            ).scalar_one_or_none()
    except Exception:  # noqa: BLE001 - no table yet, or unreachable: nothing to catch up
        return False
    return value is not None and float(value) < time.time()


def install_backup_job(
    scheduler: BaseScheduler,
    database: sa.Engine | None,
    backup: BackupSetting,
    *,
    jobstore: str = "default",
) -> Job | None:
    """`create_scheduler(backup=...)`: resolve the setting and register the job, or don't.

    `None` (the default): install it when $JOBSTORE_EXPORTER_BACKUP_DIR names a directory.
    `False`: never. `True`: required, directory from that variable. A path: that directory.
    A mapping: keyword arguments of `register_backup_job` (`backup_dir` defaults to the variable).
    """
    if backup is False:
        return None
    from_env = os.environ.get(BACKUP_DIR_ENV) or None
    settings: dict[str, Any]
    if backup is None:
        if from_env is None:
            log.info(
                "no daily database backup: pass create_scheduler(backup='/backups') or set %s",
                BACKUP_DIR_ENV,
            )
            return None
        settings = {"backup_dir": from_env}
    elif backup is True:
        if from_env is None:
            raise ValueError(
                f"backup=True needs a directory: pass backup=DIR or set {BACKUP_DIR_ENV}"
            )
        settings = {"backup_dir": from_env}
    elif isinstance(backup, Mapping):
        settings = dict(backup)
        settings.setdefault("backup_dir", from_env)
        if not settings["backup_dir"]:
            raise ValueError(f"backup needs 'backup_dir' (or {BACKUP_DIR_ENV})")
    else:
        settings = {"backup_dir": os.fspath(backup)}
    if database is None:
        log.warning("backup requested but no database is configured: nothing to back up")
        return None
    settings.setdefault("jobstore", jobstore)
    return register_backup_job(scheduler, database_url=database, **settings)
