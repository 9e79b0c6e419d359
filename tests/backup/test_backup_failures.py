"""Each failure mode fails loudly, leaves no partial file, and reaches /metrics as
`apscheduler_backup_last_run_success 0` through the real pipeline (scheduler, recorder, history
table, poller, collector)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from backup_helpers import fill_database, ours, run_backup_job, tiny_tmpfs
from support import Database

from exporter.kit.backup import BackupError, MissingTool, backup_database


def assert_failed(run, reason: str) -> None:
    assert [r["status"] for r in run.rows] == ["failed"]
    message = run.rows[0]["error_message"]
    assert message.startswith("BackupError: ") or message.startswith("MissingTool: ")
    assert reason in message, message
    assert run.sample("apscheduler_backup_last_run_success") == 0
    assert run.sample("apscheduler_backup_last_failure_timestamp_seconds") is not None


def test_a_successful_run_reaches_metrics(any_db: Database, tmp_path: Path):
    run = run_backup_job(any_db, tmp_path / "backups")
    assert [r["status"] for r in run.rows] == ["success"]
    assert run.sample("apscheduler_backup_last_run_success") == 1
    (only,) = [p for p in (tmp_path / "backups").iterdir() if not p.name.startswith(".")]
    assert run.sample("apscheduler_backup_files") == 1
    assert run.sample("apscheduler_backup_newest_file_size_bytes") == only.stat().st_size > 0
    assert run.sample("apscheduler_backup_total_size_bytes") == only.stat().st_size
    assert run.sample("apscheduler_backup_newest_file_timestamp_seconds") == pytest.approx(
        only.stat().st_mtime
    )


def test_disk_full(any_db: Database, tmp_path: Path):
    fill_database(any_db, megabytes=0.3)
    with tiny_tmpfs(tmp_path / "small", size="64k") as backups:
        run = run_backup_job(any_db, backups)
        assert ours(backups) == []  # no partial file
    assert_failed(run, "no space left on the device holding")
    assert (
        "free space there, lower keep, or move backup_dir to a larger volume"
        in (run.rows[0]["error_message"])
    )
    assert run.sample("apscheduler_backup_files") == 0


def test_unwritable_directory(any_db: Database, tmp_path: Path):
    with tiny_tmpfs(tmp_path / "ro", read_only=True) as backups:
        run = run_backup_job(any_db, backups)
        assert ours(backups) == []
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert_failed(run, f"backup_dir {backups} is not writable ({reason})")
    assert "mount it read-write" in run.rows[0]["error_message"]
    assert run.sample("apscheduler_backup_files") == 0


def test_backup_dir_below_a_file(sqlite_db: Database, tmp_path: Path):
    sqlite3.connect(sqlite_db.url.removeprefix("sqlite:///")).close()
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(BackupError, match="is not a directory .*choose a directory path"):
        backup_database(sqlite_db.url, tmp_path / "file" / "backups")


@pytest.mark.parametrize(
    "kind, fixture, package",
    [("pg_dump", "pg_db", "postgresql-client"), ("mariadb-dump", "mariadb_db", "mariadb-client")],
)
def test_missing_dump_tool(kind, fixture, package, request, tmp_path: Path, monkeypatch):
    db: Database = request.getfixturevalue(fixture)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    run = run_backup_job(db, tmp_path / "backups")
    assert_failed(run, f"not found on PATH: install the Debian package {package}")
    assert run.rows[0]["error_message"].startswith("MissingTool: ")
    assert ours(tmp_path / "backups") == []
    with pytest.raises(MissingTool, match=f"apt-get install {package}"):
        backup_database(db.url, tmp_path / "backups")


def test_missing_sqlite_file_is_not_created(tmp_path: Path):
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(BackupError, match="not found: check database_url"):
        backup_database(f"sqlite:///{missing}", tmp_path / "backups")
    assert not missing.exists()
    assert not (tmp_path / "backups").exists()  # checked before anything is written


def test_server_unreachable_names_the_tool_and_hides_the_password(tmp_path: Path):
    url = "postgresql://app:hunter2-secret@127.0.0.1:1/app"
    with pytest.raises(BackupError) as caught:
        backup_database(url, tmp_path, timeout=30)
    text = str(caught.value)
    assert text.startswith(
        "pg_dump failed (exit 1) for postgresql+psycopg://app:***@127.0.0.1:1/app"
    )
    assert "hunter2-secret" not in text
    assert os.listdir(tmp_path) == [".app.backup-lock"]
