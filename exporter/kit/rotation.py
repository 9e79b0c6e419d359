"""Rotation and the manifest of the backup job: which files are good backups, which go.

Split from ``backup.py`` (which takes the copies): after a verified copy got its final name, it
is recorded in the directory's manifest (``exporter.shared.backup_files``), then rotation keeps the
newest ``keep`` good backups and deletes the rest; files the manifest does not list are never
counted among those kept and never touched, only logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exporter.shared.backup_files import (
    BackupFile,
    ManifestEntry,
    list_backups,
    read_manifest,
    write_manifest,
)

log = logging.getLogger("exporter.kit.backup")


def rotation_victims(
    files: list[BackupFile],
    *,
    keep: int,
    max_age_days: float | None = None,
    now: datetime | None = None,
    protect: Path | None = None,
) -> list[BackupFile]:
    """The files rotation deletes: beyond the newest `keep`, or older than `max_age_days`.

    The newest file and `protect` (the backup just verified) are never among them.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    now = now or datetime.now(UTC)
    ordered = sorted(files, key=lambda f: (f.taken_at, f.mtime, f.path.name), reverse=True)
    max_age = timedelta(days=max_age_days) if max_age_days is not None else None
    victims = []
    for rank, item in enumerate(ordered):
        if rank == 0 or item.path == protect:
            continue
        if rank >= keep or (max_age is not None and now - item.taken_at > max_age):
            victims.append(item)
    return victims


def rotate(
    directory: Path,
    prefix: str,
    ext: str,
    *,
    keep: int,
    max_age_days: float | None = None,
    protect: Path | None = None,
    now: datetime | None = None,
) -> tuple[Path, ...]:
    """Delete what `rotation_victims` names among this database's backups; return the paths."""
    removed = []
    victims = rotation_victims(
        list_backups(directory, prefix=prefix, ext=ext),
        keep=keep,
        max_age_days=max_age_days,
        now=now,
        protect=protect,
    )
    for item in victims:
        try:
            item.path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not delete old backup %s: %s", item.path, exc.strerror or exc)
            continue
        removed.append(item.path)
    if removed:
        fsync_dir(directory)
    return tuple(removed)


def record(directory: Path, prefix: str, final: Path, verification: str) -> None:
    """Add the verified backup to the prefix's manifest (created on the first run: the
    backups already there, except names dated in the future, are taken over as they are, so
    an upgrade keeps its history and rotation still ages them out)."""
    entries = read_manifest(directory, prefix)
    if entries is None:
        entries = {
            item.path.name: ManifestEntry(
                item.path.name, item.size, int(item.mtime), "present before the manifest"
            )
            for item in list_backups(directory, prefix=prefix)
            if item.size > 0
        }
    info = final.stat()
    entries[final.name] = ManifestEntry(final.name, info.st_size, int(info.st_mtime), verification)
    present = {name: e for name, e in entries.items() if (directory / name).is_file()}
    write_manifest(directory, prefix, present.values())
    fsync_dir(directory)


def forget(directory: Path, prefix: str, removed: tuple[Path, ...]) -> None:
    if not removed:
        return
    entries = read_manifest(directory, prefix) or {}
    gone = {path.name for path in removed}
    write_manifest(directory, prefix, [e for name, e in entries.items() if name not in gone])
    fsync_dir(directory)


def warn_untrusted(directory: Path, prefix: str) -> None:
    for item in list_backups(directory, prefix=prefix, untrusted=True):
        if not item.trusted:
            log.warning(
                "backup_dir %s: ignored %s (%s); it does not count among the backups kept and "
                "is left alone: remove it if it is not a backup you made",
                directory,
                item.path.name,
                item.untrusted,
            )


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)
