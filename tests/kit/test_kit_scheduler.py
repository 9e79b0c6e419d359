"""`create_scheduler`: job store choice, driver mapping, SQLite WAL, recording wired in."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from kit_helpers import EventCounter, history

from exporter import create_scheduler as exported_create_scheduler
from exporter import instrument as exported_instrument
from exporter.kit import create_scheduler, get_recorder, instrument
from exporter.kit.engine import normalize_url


async def tick() -> None:
    await asyncio.sleep(0)


async def shut_down(scheduler: AsyncIOScheduler) -> None:
    """AsyncIOScheduler.shutdown() only schedules the shutdown on the loop: let it run."""
    scheduler.shutdown()
    await asyncio.sleep(0)


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_public_names():
    assert exported_create_scheduler is create_scheduler
    assert exported_instrument is instrument


@pytest.mark.parametrize(
    "given, driver",
    [
        ("postgresql://u:p@db/app", "postgresql+psycopg"),
        ("postgres://u:p@db/app", "postgresql+psycopg"),
        ("mysql://u:p@db/app", "mysql+pymysql"),
        ("mariadb://u:p@db/app", "mariadb+pymysql"),
        ("postgresql+asyncpg://u:p@db/app", "postgresql+psycopg"),
        ("mysql+aiomysql://u:p@db/app", "mysql+pymysql"),
        ("sqlite+aiosqlite:///app.db", "sqlite"),
        ("sqlite:///app.db", "sqlite"),
    ],
)
def test_default_drivers(given, driver):
    assert normalize_url(given).drivername == driver


def test_memory_mode_without_a_database(monkeypatch, caplog):
    caplog.set_level(logging.INFO, "exporter.kit")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    scheduler = create_scheduler(timezone="UTC")
    assert isinstance(scheduler, AsyncIOScheduler)
    assert get_recorder(scheduler) is None
    assert "memory mode" in caplog.text


async def test_database_url_from_the_environment(sqlite_db, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "exporter.kit")
    monkeypatch.setenv("DATABASE_URL", sqlite_db.url)
    scheduler = create_scheduler(timezone="UTC")
    store = scheduler._jobstores["default"]
    assert isinstance(store, SQLAlchemyJobStore) and store.jobs_t.name == "apscheduler_jobs"
    assert "using database for job persistence" in caplog.text
    counter = EventCounter(scheduler)
    scheduler.start()
    scheduler.add_job(tick, "interval", hours=1, id="hourly", next_run_time=None)
    scheduler.add_job(tick, id="now")
    await until(lambda: counter.total() == 1)
    await shut_down(scheduler)
    engine = sqlite_db.engine()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("SELECT id FROM apscheduler_jobs").scalars().all() == ["hourly"]
    assert [(r["job_id"], r["status"]) for r in history(engine)] == [("now", "success")]


async def test_plain_scheme_urls_and_kit_options(any_db, caplog):
    caplog.set_level(logging.INFO, "exporter.kit")
    url = sa.make_url(any_db.url)
    plain = url.set(drivername=url.get_backend_name())  # no driver named
    if any_db.kind == "postgresql":  # the local server trusts; MariaDB's root has no password
        plain = plain.set(password="s3cr3t-pw")
    scheduler = create_scheduler(
        plain.render_as_string(hide_password=False), history_table="runs", timezone="UTC"
    )
    assert str(scheduler.timezone) == "UTC"
    counter = EventCounter(scheduler)
    scheduler.start()
    scheduler.add_job(tick, id="once")
    await until(lambda: counter.total() == 1)
    await shut_down(scheduler)
    assert [r["job_id"] for r in history(any_db.engine(), table="runs")] == ["once"]
    assert "s3cr3t-pw" not in caplog.text
    if any_db.kind == "postgresql":
        assert "postgres:***@" in caplog.text


async def test_an_app_engine_is_used_for_both(sqlite_db):
    engine = sa.create_engine(sqlite_db.url)
    scheduler = create_scheduler(engine, timezone="UTC")
    assert scheduler._jobstores["default"].engine is engine
    assert get_recorder(scheduler).writer.engine is engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    get_recorder(scheduler).close()


async def test_user_job_stores_are_kept(sqlite_db):
    scheduler = create_scheduler(
        sqlite_db.url, jobstores={"scratch": MemoryJobStore()}, timezone="UTC"
    )
    assert set(scheduler._jobstores) == {"default", "scratch"}
    get_recorder(scheduler).close()


async def test_a_reader_holding_a_transaction_does_not_stall_the_scheduler(sqlite_db):
    """The seed's SQLite trap: with WAL the job store keeps updating under an open read."""
    scheduler = create_scheduler(sqlite_db.url, timezone="UTC")
    counter = EventCounter(scheduler)
    scheduler.start()
    scheduler.add_job(tick, "interval", seconds=0.1, id="ticker")
    await until(lambda: counter.total() >= 1)
    reader = sqlite3.connect(sa.make_url(sqlite_db.url).database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM apscheduler_jobs").fetchall()
    reader.execute("SELECT * FROM job_execution").fetchall()
    before = counter.total()
    try:
        await until(lambda: counter.total() >= before + 5)
    finally:
        reader.execute("COMMIT")
        reader.close()
    await shut_down(scheduler)
    runs = history(sqlite_db.engine())
    assert len(runs) == counter.total() and {r["status"] for r in runs} == {"success"}


def test_the_kit_never_imports_the_sidecar():
    code = (
        "import sys, exporter.kit, exporter\n"
        "exporter.create_scheduler, exporter.instrument\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('exporter'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    shared = (
        "exporter",
        "exporter.shared",
        "exporter.shared.tables",
        "exporter.shared.backup_files",
        "exporter.shared.dburl",
        "exporter.shared.version",
    )  # import neither half
    outside = [m for m in loaded if m not in shared]
    assert all(m.startswith("exporter.kit") for m in outside), loaded


ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mariadb": "mysql+aiomysql",
}


async def test_the_apps_async_driver_url_runs_on_the_shipped_driver(any_db, caplog):
    """An async app's DATABASE_URL names asyncpg / aiomysql / aiosqlite; the kit runs its job
    store and history on the shipped synchronous driver instead, and says so once."""
    caplog.set_level(logging.INFO, "exporter.kit")
    url = sa.make_url(any_db.url).set(drivername=ASYNC_DRIVERS[any_db.kind])
    scheduler = create_scheduler(url.render_as_string(hide_password=False), timezone="UTC")
    counter = EventCounter(scheduler)
    scheduler.start()
    scheduler.add_job(tick, id="once")
    scheduler.add_job(tick, "interval", hours=1, id="hourly")
    await until(lambda: counter.total() == 1)
    await shut_down(scheduler)
    assert [r["job_id"] for r in history(any_db.engine())] == ["once"]
    engine = any_db.engine()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM apscheduler_jobs").scalars().all() == ["hourly"]
    engine.dispose()
    driver = ASYNC_DRIVERS[any_db.kind].split("+")[1]
    assert caplog.text.count(f"the URL names the {driver} driver") == 1


def test_an_unknown_scheme_is_one_line_for_the_kit_too():
    with pytest.raises(ValueError) as info:
        create_scheduler("postgressql://app:pw@db/app")
    assert "supported: postgresql://, postgres://, mysql://, mariadb://, sqlite:///" in str(
        info.value
    )
    assert "pw" not in str(info.value)
