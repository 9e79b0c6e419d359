"""Rotation: after a verified success only, newest N by the UTC time in the name, optionally by
age; the newest backup is never deleted; files that are not ours are never touched."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import Database

from exporter.kit.backup import STALE_TEMP_AFTER, BackupError, backup_database, rotation_victims
from exporter.shared.backup_files import BackupFile, backup_name, list_backups, parse_backup_name

NOW = datetime(2026, 11, 25, 2, 0, 5, tzinfo=UTC)


def make(directory: Path, name: str, size: int = 10, mtime: float | None = None) -> Path:
    path = directory / name
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def test_names_are_utc_and_parse_back():
    local = datetime(2026, 11, 25, 3, 4, 5, tzinfo=UTC).astimezone()  # any zone in, UTC out
    assert backup_name("app", local, "sqlite") == "app_20261125T030405Z.sqlite"
    assert parse_backup_name("my_app_20261125T030405Z.dump") == (
        "my_app", datetime(2026, 11, 25, 3, 4, 5, tzinfo=UTC), "dump",
    )  # fmt: skip
    for foreign in (
        "app_20261125T030405.sqlite",  # no Z: local time, not ours
        "app_20261125T030405Z.sqlite.bak",
        ".app_20261125T030405Z.sqlite.1a2b3c4d.tmp",  # another run's temp file
        "app_20261325T030405Z.sqlite",  # month 13
        "app-2026-11-25.sql",
        "app_20261125T030405Z.tar.gz",
    ):
        assert parse_backup_name(foreign) is None, foreign


def file(name: str, taken: datetime, mtime: float = 0.0) -> BackupFile:
    return BackupFile(Path(name), "app", taken, 1, mtime)


def test_victims_keep_newest_n_by_name_time_not_mtime():
    files = [file(f"f{n}", days_ago(n), mtime=1000 - n if n != 5 else 5000) for n in range(10)]
    victims = rotation_victims(files, keep=3, now=NOW)
    # f5 has the newest mtime (touched by a copy), but the name says it is old: it goes.
    assert sorted(v.path.name for v in victims) == [f"f{n}" for n in range(3, 10)]


def test_victims_by_age_never_the_newest():
    files = [file(f"f{n}", days_ago(10 + n)) for n in range(4)]
    victims = rotation_victims(files, keep=7, max_age_days=3, now=NOW)
    assert sorted(v.path.name for v in victims) == ["f1", "f2", "f3"]  # f0 is the newest: kept
    with pytest.raises(ValueError):
        rotation_victims(files, keep=0)


def test_a_future_dated_file_does_not_push_out_the_new_backup():
    new = file("new", NOW)
    future = file("future", NOW + timedelta(days=400))
    assert rotation_victims([future, new], keep=1, now=NOW, protect=Path("new")) == []


def test_rotation_on_a_real_backup(sqlite_db: Database, tmp_path: Path):
    sa.create_engine(sqlite_db.url).connect().close()  # create the file
    backups = tmp_path / "backups"
    backups.mkdir()
    # backup_database() dates its own file with the real clock, so the planted files must be
    # dated against it too (a fixed date here turns every planted file old as the calendar moves).
    now = datetime.now(UTC)
    old = [
        make(backups, backup_name("app", now - timedelta(days=n), "sqlite")) for n in range(1, 7)
    ]
    foreign = [
        make(backups, backup_name("other", now - timedelta(days=30), "sqlite")),  # another database
        make(backups, backup_name("app", now - timedelta(days=30), "dump")),  # another backend
        make(backups, "app_20200101T000000Z.sqlite.bak"),
        make(backups, "app.sqlite"),
        make(backups, "notes.txt"),
        make(backups, ".app_20200101T000000Z.sqlite.1a2b3c4d.tmp"),  # a running run's temp
    ]
    stale = make(
        backups,
        ".app_20200101T000000Z.sqlite.deadbeef.tmp-journal",
        mtime=time.time() - STALE_TEMP_AFTER - 60,
    )
    result = backup_database(sqlite_db.url, backups, keep=3)
    kept = [f.path for f in list_backups(backups, prefix="app", ext="sqlite")]
    assert kept == [result.path, old[0], old[1]]
    assert sorted(result.removed) == sorted(old[2:])
    assert all(p.exists() for p in foreign)
    assert not stale.exists()  # a crashed run's leftover, older than a day

    result = backup_database(sqlite_db.url, backups, keep=7, max_age_days=1.5)
    kept = [f.path for f in list_backups(backups, prefix="app", ext="sqlite")]
    assert kept[0] == result.path
    assert old[0] in kept and old[1] not in kept
    assert all(p.exists() for p in foreign)


def test_no_rotation_after_a_failed_backup(tmp_path: Path):
    backups = tmp_path / "backups"
    backups.mkdir()
    old = [make(backups, backup_name("app", days_ago(n), "sqlite")) for n in range(1, 10)]
    db = tmp_path / "app.sqlite"
    db.write_bytes(b"this is not a database, at all" * 100)
    with pytest.raises(BackupError):
        backup_database(f"sqlite:///{db}", backups, keep=2)
    assert all(p.exists() for p in old)
    assert sorted(p.name for p in backups.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in old
    )


def test_keep_must_be_positive(sqlite_db: Database, tmp_path: Path):
    with pytest.raises(ValueError, match="keep must be at least 1"):
        backup_database(sqlite_db.url, tmp_path, keep=0)
