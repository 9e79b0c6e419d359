"""The sidecar's backup directory source and its four metric families."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from stores import write_jobs
from support import Database

from exporter.shared import backup_files as kit
from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector, build_registry
from exporter.sidecar.poller import StorePoller
from exporter.sidecar.snapshot import BackupFiles
from exporter.sidecar.sources.backups import BackupDirSource


def store(backup_dir: Path | None, db_url: str = "sqlite:////nonexistent/app.sqlite"):
    return load_config(db_url=db_url, backup_dir=backup_dir).stores[0]


def put(directory: Path, name: str, size: int, mtime: float) -> None:
    path = directory / name
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


def test_counts_only_our_files(tmp_path: Path):
    t0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    for n, size in enumerate((100, 200, 300)):
        when = t0 - timedelta(days=n)
        put(tmp_path, kit.backup_name("app", when, "sqlite"), size, when.timestamp() + 5)
    put(tmp_path, kit.backup_name("other", t0 - timedelta(days=9), "dump"), 50, 1000.0)
    # Not ours: temp file of a running backup (even with a newer mtime), lock, foreign names.
    put(tmp_path, ".app_20261126T020000Z.sqlite.1a2b3c4d.tmp", 9999, t0.timestamp() + 86400)
    put(tmp_path, ".app.backup-lock", 0, t0.timestamp())
    put(tmp_path, "app_20261126T020000.sqlite", 7777, t0.timestamp() + 86400)
    put(tmp_path, "README", 10, t0.timestamp() + 86400)
    (tmp_path / kit.backup_name("dir", t0 + timedelta(days=9), "sql")).mkdir()

    files = BackupDirSource(store(tmp_path)).read(0.0)
    assert files == BackupFiles(
        files=4, newest_timestamp=t0.timestamp() + 5, newest_size=100, total_size=650
    )
    assert BackupDirSource(store(None)).read(0.0) is None
    (tmp_path / "empty").mkdir()
    assert BackupDirSource(store(tmp_path / "empty")).read(0.0) == BackupFiles(0, None, None, 0)


def test_a_missing_directory_is_a_source_error(tmp_path: Path):
    with pytest.raises(OSError, match="does not exist \\(is the backup volume mounted\\?\\)"):
        BackupDirSource(store(tmp_path / "gone")).read(0.0)


def value(text: str, name: str) -> float | None:
    prefix = f'{name}{{jobstore="default"}} '
    return next((float(x[len(prefix) :]) for x in text.splitlines() if x.startswith(prefix)), None)


def metrics(poller: StorePoller) -> str:
    return generate_latest(build_registry(SnapshotCollector(lambda: [poller.snapshot]))).decode()


def test_read_while_the_database_is_down_and_errors_counted(sqlite_db: Database, tmp_path: Path):
    t0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    put(tmp_path, kit.backup_name("app", t0, "sqlite"), 0, t0.timestamp())  # a failed backup
    # The database file does not exist: every database source fails, the files are still read.
    poller = StorePoller(store(tmp_path))
    try:
        snapshot = poller.poll()
        assert not snapshot.up
        assert snapshot.source_ok("backups")
        text = metrics(poller)
        assert 'apscheduler_backup_files{jobstore="default"} 1.0' in text
        assert 'apscheduler_backup_newest_file_size_bytes{jobstore="default"} 0.0' in text
        assert 'apscheduler_backup_total_size_bytes{jobstore="default"} 0.0' in text
        assert value(text, "apscheduler_backup_newest_file_timestamp_seconds") == t0.timestamp()
    finally:
        poller.close()

    write_jobs(sqlite_db.url)  # a job store that reads fine
    poller = StorePoller(store(tmp_path / "unmounted", sqlite_db.url))
    try:
        poller.poll()
        poller.poll()
        assert poller.snapshot.up
        assert not poller.snapshot.source_ok("backups")
        text = metrics(poller)
        assert (
            'jobstore_exporter_poll_errors_total{jobstore="default",source="backups"} 2.0' in text
        )
        assert "apscheduler_backup_files{" not in text
    finally:
        poller.close()


def test_no_backup_dir_no_source(sqlite_db: Database):
    write_jobs(sqlite_db.url)
    poller = StorePoller(store(None, sqlite_db.url))
    try:
        poller.poll()
        assert "backups" not in poller.snapshot.sources
        assert "apscheduler_backup_files{" not in metrics(poller)
    finally:
        poller.close()
