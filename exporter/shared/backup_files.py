"""How backup files are named, recorded and found: shared by the backup job (kit) and the sidecar.

Like ``tables.py`` this module imports neither half, so the scheduler-side kit (which writes
``<db>_<YYYYmmddTHHMMSSZ>.<ext>`` files) and the sidecar (which counts and dates them) read one
definition of a finished backup.

A name alone proves nothing: anyone can drop ``app_20991231T000000Z.sqlite`` into the
directory, and a name dated in the future would then be "newest" for ever. So the backup job
also records each file it wrote and verified in a manifest beside the files
(``.<db>.backups.json``: name, size, modification time, verification). Where a manifest exists,
only the files it lists, unchanged since, are *good* backups: they alone are counted, reported
and kept by rotation. Other files named like backups are *untrusted*: reported as such, never
counted among the backups kept, never deleted. A directory without a manifest (backups written
before manifests existed) is read by names, except that names dated in the future are untrusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
EXTENSIONS = {"sqlite": "sqlite", "postgresql": "dump", "mysql": "sql"}
BACKUP_NAME = re.compile(
    r"^(?P<prefix>[A-Za-z0-9][A-Za-z0-9._-]*)_(?P<stamp>\d{8}T\d{6}Z)\.(?P<ext>sqlite|dump|sql)$"
)
"""A finished backup; temp files, lock files and anything else do not match."""

KINDS_BY_EXT = {ext: kind for kind, ext in EXTENSIONS.items()}
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
"""A manifest lists a few backups; anything larger is not one of ours."""
FUTURE_SLACK = 3600.0
"""Seconds a name may be ahead of this clock (another host's clock) before it counts as future."""


@dataclass(frozen=True)
class BackupFile:
    """A finished backup in a backup directory, as its name and `stat` describe it."""

    path: Path
    prefix: str
    taken_at: datetime  # UTC, from the name
    size: int
    mtime: float
    untrusted: str | None = None  # why it is not a good backup; None for a good one

    @property
    def trusted(self) -> bool:
        return self.untrusted is None

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


def manifest_path(directory: str | os.PathLike[str], prefix: str) -> Path:
    return Path(directory) / f".{prefix}.backups.json"


@dataclass(frozen=True)
class ManifestEntry:
    """One backup as the job wrote and verified it."""

    name: str
    size: int
    mtime: int  # whole seconds: a copy that keeps times (cp -p, rsync -t) still matches
    verification: str

    def matches(self, size: int, mtime: float) -> bool:
        return self.size == size and self.mtime == int(mtime)


def read_manifest(
    directory: str | os.PathLike[str], prefix: str
) -> dict[str, ManifestEntry] | None:
    """The entries of a prefix's manifest by file name; None when there is no usable manifest.

    Opened without following a symlink, bounded in size; a malformed one counts as absent (the
    names are then read as before manifests), never as an error that hides the backups.
    """
    try:
        fd = os.open(manifest_path(directory, prefix), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        return None
    try:
        data = json.loads(raw)
        entries = [
            ManifestEntry(
                str(item["name"]), int(item["size"]), int(item["mtime"]), str(item["verification"])
            )
            for item in data["backups"]
        ]
    except (ValueError, TypeError, KeyError):
        return None
    return {entry.name: entry for entry in entries}


def write_manifest(
    directory: str | os.PathLike[str], prefix: str, entries: Iterable[ManifestEntry]
) -> None:
    """Replace a prefix's manifest atomically (temp file, fsync, rename): a reader sees the old
    one or the new one, never half of either."""
    target = manifest_path(directory, prefix)
    temp = target.with_name(f"{target.name}.{secrets.token_hex(4)}.tmp")
    document: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "about": "backups written and verified by jobstore-exporter's backup job",
        "backups": [entry.__dict__ for entry in sorted(entries, key=lambda e: e.name)],
    }
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def list_backups(
    directory: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    ext: str | None = None,
    untrusted: bool = False,
    now: float | None = None,
) -> list[BackupFile]:
    """Good backups in `directory`, newest first (by the time in the name, then mtime).

    Only regular files named like our backups are candidates; `prefix` and `ext` narrow it to
    one database. Of those, a file is good when its prefix's manifest lists it unchanged, or,
    for a prefix without a manifest, when its name is not dated in the future. With
    ``untrusted=True`` the others are returned too, each saying why it is not trusted.
    """
    now = datetime.now(UTC).timestamp() if now is None else now
    found = []
    manifests: dict[str, dict[str, ManifestEntry] | None] = {}
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
            if parsed[0] not in manifests:
                manifests[parsed[0]] = read_manifest(directory, parsed[0])
            reason = _distrust(
                manifests[parsed[0]], entry.name, parsed[1], info.st_size, info.st_mtime, now
            )
            if reason is not None and not untrusted:
                continue
            found.append(
                BackupFile(
                    Path(entry.path), parsed[0], parsed[1], info.st_size, info.st_mtime, reason
                )
            )
    found.sort(key=lambda f: (f.taken_at, f.mtime, f.path.name), reverse=True)
    return found


def _distrust(
    manifest: dict[str, ManifestEntry] | None,
    name: str,
    taken_at: datetime,
    size: int,
    mtime: float,
    now: float,
) -> str | None:
    """Why a file named like a backup is not a good one; None when it is."""
    if manifest is not None:
        listed = manifest.get(name)
        if listed is None:
            return "not written by the backup job (not in its manifest)"
        if not listed.matches(size, mtime):
            return "changed since the backup job wrote it"
        return None
    if taken_at.timestamp() > now + FUTURE_SLACK:
        return "named with a time in the future"
    return None
