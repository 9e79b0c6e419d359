"""Backups are what the backup job wrote and verified (its manifest), not whatever carries a
backup's name: a planted file dated in the future is neither "newest" nor one of those kept."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from support import Database

from exporter.kit.backup import BackupError, backup_database
from exporter.shared.backup_files import backup_name, list_backups, manifest_path
from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector, build_registry
from exporter.sidecar.poller import StorePoller

PLANTED = "app_20991231T000000Z.sqlite"


def served(db: Database, backups: Path) -> dict[str, float]:
    """The backup gauges the sidecar serves for this directory, from a real poll."""
    poller = StorePoller(load_config(db_url=db.url, backup_dir=backups).stores[0])
    try:
        poller.poll()
        text = generate_latest(build_registry(SnapshotCollector(lambda: [poller.snapshot])))
    finally:
        poller.close()
    values = {}
    for line in text.decode().splitlines():
        if line.startswith("apscheduler_backup_") and 'jobstore="default"' in line:
            values[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    return values


def test_a_planted_future_file_is_not_newest_and_does_not_shrink_keep(
    sqlite_db: Database, tmp_path: Path
) -> None:
    sa.create_engine(sqlite_db.url).connect().close()  # create the database file
    backups = tmp_path / "backups"
    backups.mkdir()
    first = backup_database(sqlite_db.url, backups, keep=3)
    planted = backups / PLANTED
    planted.write_bytes(b"7 bytes")
    results = [first] + [backup_database(sqlite_db.url, backups, keep=3) for _ in range(3)]

    good = list_backups(backups, prefix="app", ext="sqlite")
    assert [f.path for f in good] == [r.path for r in reversed(results[1:])]  # 3 real ones kept
    assert planted.read_bytes() == b"7 bytes"  # left alone, and flagged
    flagged = [f for f in list_backups(backups, untrusted=True) if not f.trusted]
    assert [f.path for f in flagged] == [planted]
    assert "not in its manifest" in (flagged[0].untrusted or "")

    newest = results[-1]
    gauges = served(sqlite_db, backups)
    assert gauges["apscheduler_backup_files"] == 3
    assert gauges["apscheduler_backup_newest_file_size_bytes"] == newest.size != 7
    assert gauges["apscheduler_backup_newest_file_timestamp_seconds"] == pytest.approx(
        newest.path.stat().st_mtime
    )
    assert gauges["apscheduler_backup_total_size_bytes"] == sum(r.size for r in results[1:])
    assert gauges["apscheduler_backup_untrusted_files"] == 1


def test_a_file_changed_after_the_job_wrote_it_is_untrusted(
    sqlite_db: Database, tmp_path: Path
) -> None:
    sa.create_engine(sqlite_db.url).connect().close()
    backups = tmp_path / "backups"
    older = backup_database(sqlite_db.url, backups, keep=5)
    newer = backup_database(sqlite_db.url, backups, keep=5)
    newer.path.write_bytes(b"overwritten")
    assert [f.path for f in list_backups(backups)] == [older.path]
    gauges = served(sqlite_db, backups)
    assert gauges["apscheduler_backup_newest_file_size_bytes"] == older.size
    assert gauges["apscheduler_backup_untrusted_files"] == 1


def test_backups_from_before_the_manifest_are_taken_over_but_not_a_future_one(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """An upgrade: the directory holds backups named by an earlier version, without manifest.
    They are read by name meanwhile (a future name excepted), and the first run takes them over
    so rotation keeps counting them."""
    sa.create_engine(sqlite_db.url).connect().close()
    backups = tmp_path / "backups"
    backups.mkdir()
    now = datetime.now(UTC)
    old = []
    for days in (1, 2, 3):
        path = backups / backup_name("app", now - timedelta(days=days), "sqlite")
        path.write_bytes(b"x" * 100)
        old.append(path)
    (backups / PLANTED).write_bytes(b"7 bytes")
    assert [f.path for f in list_backups(backups)] == old  # the future name is not trusted
    assert served(sqlite_db, backups)["apscheduler_backup_newest_file_size_bytes"] == 100

    result = backup_database(sqlite_db.url, backups, keep=3)
    recorded = json.loads(manifest_path(backups, "app").read_text())["backups"]
    assert sorted(e["name"] for e in recorded) == sorted(p.name for p in [result.path, *old[:2]])
    assert [f.path for f in list_backups(backups)] == [result.path, *old[:2]]
    assert not old[2].exists() and (backups / PLANTED).exists()


def test_the_lock_file_is_never_followed_through_a_symlink(
    sqlite_db: Database, tmp_path: Path
) -> None:
    sa.create_engine(sqlite_db.url).connect().close()
    backups = tmp_path / "backups"
    backups.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, backups / ".app.backup-lock")
    with pytest.raises(BackupError, match=r"is a symbolic link: remove it") as failure:
        backup_database(sqlite_db.url, backups, keep=3)
    assert "\n" not in str(failure.value)
    assert victim.read_text() == "keep me"
    assert list_backups(backups, untrusted=True) == []  # nothing written
