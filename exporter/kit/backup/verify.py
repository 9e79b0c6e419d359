"""Verifying a backup file, by its kind: SQLite integrity check, pg_restore --list, a complete SQL
dump.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import urllib.parse
from pathlib import Path

from exporter.kit.backup.dumps import _find_tool, _run, _tool_message
from exporter.kit.backup.model import UnusableBackup, Verification
from exporter.kit.rotation import rotation_victims as rotation_victims
from exporter.shared.backup_files import KINDS_BY_EXT
from exporter.shared.backup_files import (
    BackupFile as BackupFile,  # re-exported: callers use kit.backup
)
from exporter.shared.backup_files import list_backups as list_backups

log = logging.getLogger("exporter.kit.backup")


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
