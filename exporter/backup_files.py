"""How backup files are named and found: shared by the backup job (kit) and the sidecar.

Like ``tables.py`` this module imports neither half, so the scheduler-side kit (which writes
``<db>_<YYYYmmddTHHMMSSZ>.<ext>`` files) and the sidecar (which counts and dates them) read one
definition of a finished backup.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
EXTENSIONS = {"sqlite": "sqlite", "postgresql": "dump", "mysql": "sql"}
BACKUP_NAME = re.compile(
    r"^(?P<prefix>[A-Za-z0-9][A-Za-z0-9._-]*)_(?P<stamp>\d{8}T\d{6}Z)\.(?P<ext>sqlite|dump|sql)$"
)
"""A finished backup; temp files, lock files and anything else do not match."""

KINDS_BY_EXT = {ext: kind for kind, ext in EXTENSIONS.items()}


@dataclass(frozen=True)
class BackupFile:
    """A finished backup in a backup directory, as its name and `stat` describe it."""

    path: Path
    prefix: str
    taken_at: datetime  # UTC, from the name
    size: int
    mtime: float

    @property
    def kind(self) -> str:
        return KINDS_BY_EXT[self.path.suffix.lstrip(".")]


def backup_name(prefix: str, taken_at: datetime, ext: str) -> str:
    return f"{prefix}_{taken_at.astimezone(UTC).strftime(STAMP_FORMAT)}.{ext}"


def parse_backup_name(name: str) -> tuple[str, datetime, str] | None:
    """(prefix, UTC time, extension) of a backup file name; None for anything else."""
    match = BACKUP_NAME.match(name)
    if match is None:
        return None
    try:
        stamp = datetime.strptime(match["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return match["prefix"], stamp, match["ext"]


def list_backups(
    directory: str | os.PathLike[str], *, prefix: str | None = None, ext: str | None = None
) -> list[BackupFile]:
    """Finished backups in `directory`, newest first (by the time in the name, then mtime).

    Only regular files named like our backups count; `prefix` and `ext` narrow it to one
    database. Temp files, lock files and anything else are ignored.
    """
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = parse_backup_name(entry.name)
            if parsed is None or (prefix is not None and parsed[0] != prefix):
                continue
            if ext is not None and parsed[2] != ext:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            found.append(
                BackupFile(Path(entry.path), parsed[0], parsed[1], info.st_size, info.st_mtime)
            )
    found.sort(key=lambda f: (f.taken_at, f.mtime, f.path.name), reverse=True)
    return found
