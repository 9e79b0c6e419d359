"""Taking one backup: a private temp file, fsynced, verified, renamed to its UTC name under a
directory lock, recorded in the manifest, then rotation. Nothing half-written is ever left named
as a backup.
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
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from exporter.kit.backup.dumps import _DUMPERS
from exporter.kit.backup.model import (
    _DISK_FULL,
    STALE_TEMP_AFTER,
    BackupError,
    BackupResult,
    UnusableBackup,
    backend_kind,
    backup_prefix,
)
from exporter.kit.backup.verify import verify_backup
from exporter.kit.engine import describe_url, normalize_url, redact
from exporter.kit.rotation import forget, fsync_dir, record, rotate, warn_untrusted
from exporter.shared.backup_files import EXTENSIONS, backup_name

log = logging.getLogger("exporter.kit.backup")


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
