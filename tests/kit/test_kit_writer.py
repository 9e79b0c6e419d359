"""The writer: nothing lost across database hiccups, bounded memory, racing table creation."""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from kit_helpers import EventCounter, history, per_job_counts, wait_for

from exporter.kit import instrument
from exporter.kit.ddl import ensure_tables
from exporter.kit.engine import create_kit_engine
from exporter.shared.tables import heartbeat_table, history_table


def quick() -> None:
    pass


def add_burst(scheduler: BackgroundScheduler, count: int, prefix: str = "burst") -> None:
    for i in range(count):
        scheduler.add_job(quick, id=f"{prefix}-{i}")


def sqlite_path(url: str) -> str:
    return sa.make_url(url).database or ""


def test_sqlite_lock_is_retried_without_losing_rows(sqlite_db, caplog):
    # A short busy timeout so the held lock turns into errors the writer must retry.
    engine = create_kit_engine(sqlite_db.url, sqlite_busy_timeout=0.05)
    scheduler = BackgroundScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    recorder = instrument(scheduler, engine)
    scheduler.start()
    assert recorder.flush()  # tables exist

    locker = sqlite3.connect(sqlite_path(sqlite_db.url), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        add_burst(scheduler, 30)
        wait_for(lambda: counter.total() == 30, what="the burst to run")
        wait_for(lambda: recorder.stats().write_errors >= 2, what="failed writes")
        assert recorder.stats().pending > 0
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert recorder.flush(10)
    scheduler.shutdown()
    stats = recorder.stats()
    assert stats.dropped_rows == 0 and stats.rejected == 0
    assert per_job_counts(history(engine)) == counter.per_job
    assert "work again after" in caplog.text


def _waiting_on_lock(admin: sa.Connection, kind: str, database: str) -> list[int]:
    if kind == "postgresql":
        query = (
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
    else:
        query = (
            "SELECT id FROM information_schema.processlist "
            "WHERE db = :db AND id <> CONNECTION_ID() AND state LIKE 'Waiting for table%'"
        )
    return [int(pid) for pid in admin.execute(sa.text(query), {"db": database}).scalars()]


def _kill_new_waiters(admin: sa.Connection, kind: str, database: str, killed: set[int]) -> int:
    """Kill connections blocked on the lock, once each (a killed one lingers in the lists)."""
    fresh = [pid for pid in _waiting_on_lock(admin, kind, database) if pid not in killed]
    for pid in fresh:
        if kind == "postgresql":
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        else:
            admin.exec_driver_sql(f"KILL {pid}")
        killed.add(pid)
    return len(fresh)


def test_server_hiccup_locked_table_and_killed_connections(any_db):
    """The history table is locked and the writer's blocked connection killed, twice."""
    if any_db.kind == "sqlite":  # no server connections to kill: see the test above
        return
    scheduler = BackgroundScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    recorder = instrument(scheduler, any_db.url)
    scheduler.start()
    assert recorder.flush()
    database = sa.make_url(any_db.url).database or ""

    locker = sa.create_engine(any_db.url).connect()
    admin = sa.create_engine(any_db.url, isolation_level="AUTOCOMMIT").connect()
    if any_db.kind == "postgresql":
        locker.execute(sa.text("LOCK TABLE job_execution IN ACCESS EXCLUSIVE MODE"))
    else:
        locker.exec_driver_sql("LOCK TABLES job_execution WRITE")
    killed: set[int] = set()
    try:
        for round_ in range(2):
            add_burst(scheduler, 10, prefix=f"round{round_}")
            wait_for(
                lambda: _kill_new_waiters(admin, any_db.kind, database, killed),
                what="the writer blocked on the lock",
            )
            wait_for(lambda r=round_: recorder.stats().write_errors > r, what="a failed write")
    finally:
        if any_db.kind == "postgresql":
            locker.rollback()
        else:
            locker.exec_driver_sql("UNLOCK TABLES")
        locker.close()
        admin.close()
    assert recorder.flush(15)
    scheduler.shutdown()
    stats = recorder.stats()
    assert stats.dropped_rows == 0 and stats.rejected == 0 and stats.write_errors >= 2
    assert counter.total() == 20
    assert per_job_counts(history(any_db.engine())) == counter.per_job


def test_overflow_is_counted_and_logged_once_per_burst(sqlite_db, caplog):
    engine = create_kit_engine(sqlite_db.url, sqlite_busy_timeout=0.05)
    scheduler = BackgroundScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    recorder = instrument(scheduler, engine, max_pending=5, batch_size=3)
    scheduler.start()
    assert recorder.flush()

    locker = sqlite3.connect(sqlite_path(sqlite_db.url), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        add_burst(scheduler, 40)
        wait_for(lambda: counter.total() == 40, what="the burst to run")
        stats = recorder.stats()
        assert stats.dropped_rows > 0
        assert stats.pending <= 5 + 3  # the bound, plus the batch being retried
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert recorder.flush(10)
    scheduler.shutdown()
    stats = recorder.stats()
    rows = history(engine)
    assert len(rows) == 40 - stats.dropped_rows
    assert all(r["status"] == "success" for r in rows)  # no run stuck `running`
    assert stats.overflow_bursts == 1
    full = [r for r in caplog.records if "history buffer full" in r.getMessage()]
    over = [r for r in caplog.records if "overflow over" in r.getMessage()]
    assert len(full) == 1 and len(over) == 1
    assert f"{stats.dropped_rows} finished runs" in over[0].getMessage()


def test_rows_the_database_refuses_are_dropped_alone(any_db, caplog):
    caplog.set_level(logging.WARNING, "exporter.kit")
    scheduler = BackgroundScheduler(timezone="UTC")
    recorder = instrument(scheduler, any_db.url)
    assert recorder.flush()
    now = datetime.now(UTC)
    good = [
        recorder._row(str(uuid.uuid4()), f"job-{i}", None, now, None, None, "missed")
        for i in range(3)
    ]
    bad = recorder._row(str(uuid.uuid4()), "x", None, now, None, None, "missed")
    bad["job_id"] = None  # NOT NULL
    for row in good[:2] + [bad] + good[2:]:
        recorder.writer.put_final(row["run_id"], row)
    assert recorder.flush()
    assert sorted(r["job_id"] for r in history(any_db.engine())) == ["job-0", "job-1", "job-2"]
    assert recorder.stats().rejected == 1
    assert "dropping history row" in caplog.text
    recorder.close()


def test_tables_created_concurrently_without_errors(any_db):
    """Six 'processes' (own engine each) create the same tables at the same instant."""
    name = f"race_{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def create() -> None:
        engine = create_kit_engine(any_db.url)
        metadata = sa.MetaData()
        tables = [history_table(metadata, name), heartbeat_table(metadata, f"{name}_hb")]
        barrier.wait()
        try:
            ensure_tables(engine, tables)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    inspector = sa.inspect(any_db.engine())
    assert inspector.has_table(name) and inspector.has_table(f"{name}_hb")
    indexes = {i["name"] for i in inspector.get_indexes(name)}
    assert {f"ix_{name}_job_id_id", f"ix_{name}_status"} <= indexes


def test_an_aegis_table_gets_our_columns(any_db):
    """A `job_execution` table Aegis created (no run_id/host/pid/scheduler_id) is extended."""
    engine = any_db.engine()
    metadata = sa.MetaData()
    aegis = sa.Table(
        "job_execution",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(191), nullable=False),
        sa.Column("job_name", sa.String(255)),
        sa.Column("scheduled_run_time", sa.DateTime),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("duration_ms", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_message", sa.Text),
        sa.Column("traceback", sa.Text),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(aegis.insert().values(job_id="old", status="success"))

    scheduler = BackgroundScheduler(timezone="UTC")
    counter = EventCounter(scheduler)
    instrument(scheduler, any_db.url)
    scheduler.add_job(quick, id="new")
    scheduler.start()
    wait_for(lambda: counter.total() == 1, what="a run")
    scheduler.shutdown()
    rows = history(engine)
    assert [(r["job_id"], r["status"]) for r in rows] == [("old", "success"), ("new", "success")]
    assert rows[0]["run_id"] is None and rows[1]["run_id"]
    indexes = sa.inspect(engine).get_indexes("job_execution")
    assert any(i["column_names"] == ["run_id"] and i["unique"] for i in indexes)
