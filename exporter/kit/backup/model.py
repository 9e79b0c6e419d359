"""The backup job's names, results and errors, and which backend a database URL needs."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from exporter.kit.rotation import rotation_victims as rotation_victims
from exporter.shared.backup_files import EXTENSIONS
from exporter.shared.backup_files import (
    BackupFile as BackupFile,  # re-exported: callers use kit.backup
)
from exporter.shared.backup_files import list_backups as list_backups

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
