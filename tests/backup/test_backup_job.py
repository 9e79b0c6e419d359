"""The `database_backup` job: how it is registered, where its password lives, and how APScheduler
runs it (one run for overlapping triggers, one run for missed fire times, catch-up at start)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from backup_helpers import backup_rows, ours, run_backup_job, wait_for
from support import MARIADB_ADMIN_URL, Database

import exporter
from exporter.kit import backup as kit_backup
from exporter.kit import create_scheduler, get_recorder, instrument
from exporter.kit.backup import (
    BACKUP_DIR_ENV,
    JOB_FUNC,
    BackupError,
    register_backup_job,
)


def test_public_names():
    assert exporter.register_backup_job is register_backup_job
    from exporter.kit import register_backup_job as from_kit

    assert from_kit is register_backup_job


def test_the_job_as_registered(tmp_path: Path):
    scheduler = BackgroundScheduler(timezone="UTC")
    job = register_backup_job(
        scheduler, database_url=f"sqlite:///{tmp_path}/app.sqlite", backup_dir=tmp_path / "b"
    )
    register_backup_job(  # at the next start, as apps re-register their jobs: replaced
        scheduler, database_url=f"sqlite:///{tmp_path}/app.sqlite", backup_dir=tmp_path / "b"
    )
    scheduler.start(paused=True)  # pending jobs are replaced when they reach the store
    assert [j.id for j in scheduler.get_jobs()] == ["database_backup"]
    scheduler.shutdown()
    assert job.id == "database_backup"
    assert job.name == "Daily Database Backup"
    assert job.func_ref == JOB_FUNC == "exporter.kit.backup:run_backup"
    assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, None)
    assert str(job.trigger) == "cron[hour='2', minute='0']"
    assert str(job.trigger.timezone) == "UTC"
    assert job.kwargs == {
        "database_url": f"sqlite:///{tmp_path}/app.sqlite",
        "backup_dir": str(tmp_path / "b"),
        "keep": 7,
        "max_age_days": None,
        "password_env": None,
        "password_file": None,
        "password_in_process": False,
        "timeout": 3600.0,
    }
    assert pickle.loads(pickle.dumps(job.kwargs)) == job.kwargs


def test_schedule_and_validation(tmp_path: Path):
    scheduler = BackgroundScheduler(timezone="UTC")
    url = f"sqlite:///{tmp_path}/app.sqlite"
    job = register_backup_job(
        scheduler, database_url=url, backup_dir=tmp_path, hour=3, minute=30, keep=3
    )
    assert str(job.trigger) == "cron[hour='3', minute='30']"
    assert job.kwargs["keep"] == 3
    with pytest.raises(ValueError, match="keep must be at least 1"):
        register_backup_job(scheduler, database_url=url, backup_dir=tmp_path, keep=0)
    with pytest.raises(ValueError, match="in-memory"):
        register_backup_job(scheduler, database_url="sqlite://", backup_dir=tmp_path)
    with pytest.raises(ValueError, match=r"unsupported database URL scheme 'mssql\+pyodbc://'"):
        register_backup_job(scheduler, database_url="mssql+pyodbc://h/db", backup_dir=tmp_path)


def test_a_relative_sqlite_path_is_fixed_at_registration(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = register_backup_job(
        BackgroundScheduler(), database_url="sqlite:///app.sqlite", backup_dir="backups"
    )
    assert job.kwargs["database_url"] == f"sqlite:///{tmp_path}/app.sqlite"
    assert job.kwargs["backup_dir"] == f"{tmp_path}/backups"


# --- passwords ---------------------------------------------------------------------------------


@pytest.fixture
def mariadb_user(mariadb_db: Database):
    """A MariaDB account with a real password (the local root has none) on the test database."""
    name = f"bk{uuid.uuid4().hex[:8]}"
    password = f"Pw-{uuid.uuid4().hex}"
    database = sa.make_url(mariadb_db.url).database
    admin = sa.create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"))
        conn.execute(sa.text(f"GRANT ALL ON {database}.* TO '{name}'@'%'"))
    url = sa.make_url(mariadb_db.url).set(username=name, password=password)
    try:
        yield url.render_as_string(hide_password=False), password
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP USER IF EXISTS '{name}'@'%'"))
        admin.dispose()


def stored_job_state(url: str) -> bytes:
    """The backup job's row as APScheduler persisted it."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        state = conn.execute(
            sa.text("SELECT job_state FROM apscheduler_jobs WHERE id = 'database_backup'")
        ).scalar_one()
    engine.dispose()
    return bytes(state)


def spy_subprocess(monkeypatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = subprocess.run

    def spy(argv, **kwargs):
        calls.append({"argv": list(argv), "env": dict(kwargs.get("env") or {})})
        return real(argv, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    return calls


def test_the_password_stays_out_of_the_job_store_and_argv(
    mariadb_db: Database, mariadb_user, tmp_path: Path, monkeypatch
):
    url, password = mariadb_user
    calls = spy_subprocess(monkeypatch)
    run = run_backup_job(mariadb_db, tmp_path / "backups", database_url=url)
    assert [r["status"] for r in run.rows] == ["success"], run.rows
    assert len(ours(tmp_path / "backups")) == 1
    # The dump ran with the password in its environment only.
    (dump,) = [c for c in calls if "--single-transaction" in c["argv"]]
    assert not any(password in arg for arg in dump["argv"])
    assert dump["env"]["MYSQL_PWD"] == password
    # The row APScheduler persisted holds no password.
    state = stored_job_state(mariadb_db.url)
    assert password.encode() not in state
    assert b"password_in_process" in state
    assert password not in " ".join(str(r["error_message"]) for r in run.rows)


def test_where_the_job_finds_the_password_at_run_time(mariadb_user, tmp_path: Path, monkeypatch):
    url, password = mariadb_user
    monkeypatch.delenv("DATABASE_URL", raising=False)
    dirs = iter(range(100))

    def run_backup(**kwargs: Any) -> str:  # each run in its own directory: no same-second wait
        return kit_backup.run_backup(**{**kwargs, "backup_dir": str(tmp_path / str(next(dirs)))})

    job = register_backup_job(BackgroundScheduler(), database_url=url, backup_dir=tmp_path)
    assert password not in repr(job.kwargs)
    assert job.kwargs["password_in_process"] is True
    assert run_backup(**job.kwargs)  # this process registered it: known

    # Another process (or a restart that skipped registration) does not know it.
    monkeypatch.setattr(kit_backup.job, "_process_passwords", {})
    with pytest.raises(BackupError, match="password is not known to this process"):
        run_backup(**job.kwargs)
    monkeypatch.setenv("DATABASE_URL", url)  # ... unless DATABASE_URL names the same database
    assert run_backup(**job.kwargs)
    monkeypatch.delenv("DATABASE_URL")

    public = kit_backup._public_url(sa.make_url(url))
    monkeypatch.setenv("APP_DB_PASSWORD", password)
    job = register_backup_job(
        BackgroundScheduler(), database_url=url, backup_dir=tmp_path, password_env="APP_DB_PASSWORD"
    )
    assert job.kwargs["password_env"] == "APP_DB_PASSWORD"
    assert job.kwargs["password_in_process"] is False
    assert run_backup(**job.kwargs)
    monkeypatch.delenv("APP_DB_PASSWORD")
    with pytest.raises(BackupError, match="APP_DB_PASSWORD .* is not set"):
        run_backup(**job.kwargs)

    secret_file = tmp_path / "db-password"
    secret_file.write_text(password + "\n")
    job = register_backup_job(
        BackgroundScheduler(), database_url=public, backup_dir=tmp_path, password_file=secret_file
    )
    assert run_backup(**job.kwargs)
    secret_file.unlink()
    with pytest.raises(BackupError, match="cannot read the database password file"):
        run_backup(**job.kwargs)


def test_credentials_in_the_url_query_stay_out_of_the_job_store(
    pg_db: Database, tmp_path: Path, monkeypatch
):
    """libpq takes ``?sslpassword=`` (the passphrase of a client key): like the password, it is
    kept in the registering process, never in the job's kwargs that APScheduler persists."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    secret = f"Pass-{uuid.uuid4().hex}"
    url = (
        sa.make_url(pg_db.url)
        .update_query_dict({"sslmode": "disable", "sslpassword": secret})
        .render_as_string(hide_password=False)
    )
    run = run_backup_job(pg_db, tmp_path / "backups", database_url=url)
    assert [r["status"] for r in run.rows] == ["success"], run.rows
    state = stored_job_state(pg_db.url)
    assert secret.encode() not in state

    job = register_backup_job(BackgroundScheduler(), database_url=url, backup_dir=tmp_path)
    assert secret not in repr(job.kwargs)
    assert "sslmode=disable" in job.kwargs["database_url"]
    assert job.kwargs["url_secrets_in_process"] is True
    monkeypatch.setattr(kit_backup.job, "_process_url_secrets", {})  # another process
    with pytest.raises(BackupError, match="not known to this process"):
        kit_backup.run_backup(**job.kwargs)
    monkeypatch.setenv("DATABASE_URL", url)  # ... unless DATABASE_URL names the same database
    assert kit_backup.run_backup(**{**job.kwargs, "backup_dir": str(tmp_path / "again")})


# --- create_scheduler(backup=...) --------------------------------------------------------------


@pytest.mark.parametrize(
    "backup, env, installed",
    [
        (None, False, False),
        (None, True, True),
        (False, True, False),
        ("DIR", False, True),
        ({"keep": 3, "hour": 4}, True, True),
    ],
)
def test_create_scheduler_backup_setting(backup, env, installed, tmp_path: Path, monkeypatch):
    backups = tmp_path / "backups"
    if env:
        monkeypatch.setenv(BACKUP_DIR_ENV, str(backups))
    else:
        monkeypatch.delenv(BACKUP_DIR_ENV, raising=False)
    if backup == "DIR":
        backup = backups
    scheduler = create_scheduler(
        f"sqlite:///{tmp_path}/app.sqlite", backup=backup, heartbeat_interval=None
    )
    try:
        job = scheduler.get_job("database_backup")
        assert (job is not None) == installed
        if job is not None:
            assert job.kwargs["backup_dir"] == str(backups)
            if isinstance(backup, dict):
                assert job.kwargs["keep"] == 3
                assert str(job.trigger) == "cron[hour='4', minute='0']"
    finally:
        recorder = get_recorder(scheduler)
        assert recorder is not None
        recorder.close()


def test_create_scheduler_backup_true_needs_a_directory(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(BACKUP_DIR_ENV, raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="backup=True needs a directory"):
        create_scheduler(backup=True)
    scheduler = create_scheduler(backup=tmp_path)  # memory mode: nothing to back up
    assert scheduler.get_job("database_backup") is None


# --- how APScheduler runs it -------------------------------------------------------------------


def test_overlapping_triggers_make_one_backup(pg_db: Database, tmp_path: Path, monkeypatch):
    slow = tmp_path / "bin"
    slow.mkdir()
    real = shutil.which("pg_dump")
    assert real is not None
    (slow / "pg_dump").write_text(f'#!/bin/sh\nsleep 1.5\nexec "{real}" "$@"\n')
    (slow / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")
    run = run_backup_job(pg_db, tmp_path / "backups", triggers=2, expect_rows=2)
    assert sorted(r["status"] for r in run.rows) == ["skipped", "success"]
    assert sorted(run.events) == sorted([EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES])
    assert len(ours(tmp_path / "backups")) == 1
    assert run.sample("apscheduler_backup_last_run_success") == 1


def scheduler_on(db: Database) -> tuple[BackgroundScheduler, SQLAlchemyJobStore]:
    store = SQLAlchemyJobStore(url=db.url)
    return BackgroundScheduler(jobstores={"default": store}, timezone="UTC"), store


def test_missed_fire_times_coalesce_into_one_run(sqlite_db: Database, tmp_path: Path):
    scheduler, store = scheduler_on(sqlite_db)
    events: list[int] = []
    scheduler.add_listener(lambda e: events.append(e.code), EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
    instrument(scheduler, sqlite_db.url, heartbeat_interval=None)
    register_backup_job(scheduler, database_url=sqlite_db.url, backup_dir=tmp_path / "b")
    scheduler.start(paused=True)
    # Three 02:00 fire times have passed since: coalesce runs the job once, not three times.
    three_days_ago = datetime.now(UTC) - timedelta(days=3, minutes=1)
    scheduler.modify_job("database_backup", next_run_time=three_days_ago)
    scheduler.resume()
    wait_for(lambda: EVENT_JOB_EXECUTED in events, what="the coalesced run")
    wait_for(lambda: [r["status"] for r in backup_rows(sqlite_db.url)] == ["success"])
    next_run = scheduler.get_job("database_backup").next_run_time
    scheduler.shutdown(wait=True)
    store.engine.dispose()
    assert events == [EVENT_JOB_EXECUTED]
    assert next_run > datetime.now(UTC)
    assert len(ours(tmp_path / "b")) == 1


@pytest.mark.parametrize("catch_up", [True, False])
def test_a_backup_missed_while_down_runs_at_start(
    catch_up: bool, sqlite_db: Database, tmp_path: Path
):
    # Yesterday's process stored the job, then stopped before its fire time came.
    scheduler, store = scheduler_on(sqlite_db)
    register_backup_job(scheduler, database_url=sqlite_db.url, backup_dir=tmp_path / "b")
    scheduler.start(paused=True)
    scheduler.shutdown()
    with store.engine.begin() as conn:  # ... and its fire time passed while nothing ran
        conn.execute(
            sa.text("UPDATE apscheduler_jobs SET next_run_time = :t"),
            {"t": datetime.now(UTC).timestamp() - 3600},
        )
    store.engine.dispose()

    # Today's start re-registers the job, as apps do.
    scheduler, store = scheduler_on(sqlite_db)
    job = register_backup_job(
        scheduler, database_url=sqlite_db.url, backup_dir=tmp_path / "b", catch_up=catch_up
    )
    if catch_up:
        assert job.next_run_time <= datetime.now(UTC)
        instrument(scheduler, sqlite_db.url, heartbeat_interval=None)
        scheduler.start()
        wait_for(lambda: [r["status"] for r in backup_rows(sqlite_db.url)] == ["success"])
        scheduler.shutdown(wait=True)
        assert len(ours(tmp_path / "b")) == 1
    else:
        assert not hasattr(job, "next_run_time")  # computed from the trigger at start
    store.engine.dispose()


def test_cron_fields_as_apscheduler_takes_them_and_the_log_says_so(tmp_path: Path, caplog):
    url = f"sqlite:///{tmp_path}/app.sqlite"
    store = SQLAlchemyJobStore(url=url)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        with caplog.at_level("INFO", logger="exporter.kit.backup"):
            job = register_backup_job(
                scheduler, database_url=url, backup_dir=tmp_path / "b", hour="*", minute="*"
            )
        assert str(job.trigger) == "cron[hour='*', minute='*']"
        assert job.next_run_time - datetime.now(UTC) <= timedelta(seconds=61)
        assert f"{tmp_path / 'b'} at hour=* minute=* UTC, keeping 7" in caplog.text
        caplog.clear()
        with caplog.at_level("INFO", logger="exporter.kit.backup"):
            register_backup_job(scheduler, database_url=url, backup_dir=tmp_path, minute="*/5")
            register_backup_job(scheduler, database_url=url, backup_dir=tmp_path, every=300)
            register_backup_job(scheduler, database_url=url, backup_dir=tmp_path, hour="4")
        assert "at hour=2 minute=*/5 UTC" in caplog.text
        assert "every 300 s" in caplog.text and "daily at 04:00 UTC" in caplog.text
        with pytest.raises(ValueError, match="hour=25, minute=0: "):
            register_backup_job(scheduler, database_url=url, backup_dir=tmp_path, hour=25)
        with pytest.raises(ValueError, match="every must be a positive number of seconds"):
            register_backup_job(scheduler, database_url=url, backup_dir=tmp_path, every=0)
    finally:
        scheduler.shutdown(wait=False)
        store.engine.dispose()
