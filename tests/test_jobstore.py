"""The job store source against stores written by real APScheduler schedulers."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from stores import SEED_JOBS, write_jobs
from support import Database

from exporter.sidecar.config import StoreConfig, load_config
from exporter.sidecar.db import reader_engine
from exporter.sidecar.poller import StorePoller


def store_for(url: str, **flags: object) -> StoreConfig:
    return load_config(db_url=url, **flags).stores[0]


def test_reads_exactly_what_the_scheduler_wrote(any_db: Database) -> None:
    expected = write_jobs(any_db.url)
    poller = StorePoller(store_for(any_db.url))
    snapshot = poller.poll()
    poller.close()

    assert snapshot.up and snapshot.undecodable == 0
    jobs = {job.id: job for job in snapshot.jobs}
    assert set(jobs) == {"database_backup", "cleanup_temp", "report_gen"}
    for job_id, next_run in expected.items():
        assert jobs[job_id].next_run_time == pytest.approx(next_run, abs=1e-3)
    assert jobs["database_backup"].schedule == "Daily at 02:00 UTC"
    assert jobs["cleanup_temp"].schedule == "Every 6 hours"
    assert jobs["report_gen"].schedule == "Weekly on Monday at 09:00 UTC"
    assert jobs["database_backup"].trigger == "cron"
    assert jobs["cleanup_temp"].trigger == "interval"
    assert jobs["database_backup"].name == "Daily Database Backup"
    assert jobs["database_backup"].executor == "default"
    assert jobs["database_backup"].misfire_grace_time == 1  # APScheduler's default


def test_paused_and_removed_jobs(any_db: Database) -> None:
    write_jobs(any_db.url, pause=("report_gen",))
    poller = StorePoller(store_for(any_db.url))
    snapshot = poller.poll()
    assert (snapshot.active_jobs, snapshot.paused_jobs) == (2, 1)
    assert next(j for j in snapshot.jobs if j.id == "report_gen").next_run_time is None

    write_jobs(any_db.url, jobs=[], remove=("cleanup_temp",))
    snapshot = poller.poll()
    poller.close()
    assert [job.id for job in snapshot.jobs] == ["database_backup", "report_gen"]


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_configurable_table_and_schema(kind: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue("pg_db" if kind == "postgresql" else "mariadb_db")
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA scheduler"))
    engine.dispose()
    try:
        write_jobs(db.url, tablename="aps_jobs", schema="scheduler")
        poller = StorePoller(store_for(db.url, jobs_table="aps_jobs", db_schema="scheduler"))
        snapshot = poller.poll()
        poller.close()
        assert snapshot.up and len(snapshot.jobs) == 3
        # The default table does not exist: the poll fails and says which table.
        poller = StorePoller(store_for(db.url))
        failed = poller.poll()
        poller.close()
        assert not failed.up
        assert "apscheduler_jobs" in (failed.sources["jobs"].error or "")
    finally:
        if kind == "mariadb":
            engine = db.engine()
            with engine.begin() as conn:
                conn.execute(sa.text("DROP DATABASE scheduler"))
            engine.dispose()


def _insert_raw(db: Database, job_id: str, state: bytes, next_run: float | None = None) -> None:
    engine = db.engine()
    table = sa.Table(
        "apscheduler_jobs",
        sa.MetaData(),
        sa.Column("id", sa.Unicode(191)),
        sa.Column("next_run_time", sa.Float),
        sa.Column("job_state", sa.LargeBinary),
    )
    with engine.begin() as conn:
        conn.execute(table.insert().values(id=job_id, next_run_time=next_run, job_state=state))
    engine.dispose()


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_undecodable_and_hostile_rows_are_counted_not_fatal(
    any_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_jobs(any_db.url)
    marker = tmp_path / "pwned"
    hostile = pickle.dumps({"version": 1, "id": "evil", "trigger": _Hostile(marker)}, 5)
    _insert_raw(any_db, "garbage", b"\x80\x05not a pickle at all", time.time() + 60)
    _insert_raw(any_db, "evil", hostile, time.time() + 60)

    poller = StorePoller(store_for(any_db.url))
    with caplog.at_level(logging.WARNING):
        first = poller.poll()
        second = poller.poll()
    poller.close()

    assert not marker.exists(), "a payload in job_state was executed"
    assert first.up and second.up
    assert second.undecodable == 2
    ids = {job.id: job for job in second.jobs}
    assert {"database_backup", "cleanup_temp", "report_gen"} <= set(ids)
    assert not ids["garbage"].decoded and ids["garbage"].next_run_time is not None
    # Logged once per row, with its id, however many polls see it.
    logged = [r.getMessage() for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert len(logged) == 2
    assert any("'garbage'" in line for line in logged) and any("'evil'" in line for line in logged)


def test_sqlite_reader_cannot_write_or_create(tmp_path: Path) -> None:
    db_file = tmp_path / "app.sqlite"
    write_jobs(f"sqlite:///{db_file}")
    engine = reader_engine(sa.make_url(f"sqlite:///{db_file}"), 5)
    with engine.connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly"):
        conn.execute(sa.text("DELETE FROM apscheduler_jobs"))
    engine.dispose()

    missing = tmp_path / "missing.sqlite"
    poller = StorePoller(store_for(f"sqlite:///{missing}"))
    snapshot = poller.poll()
    poller.close()
    assert not snapshot.up
    assert not missing.exists(), "the sidecar created the scheduler's database file"


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_server_sessions_are_read_only(kind: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue("pg_db" if kind == "postgresql" else "mariadb_db")
    write_jobs(db.url)
    engine = reader_engine(sa.make_url(db.url), 5)
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="(?i)read.only"):
        conn.execute(sa.text("DELETE FROM apscheduler_jobs"))
    engine.dispose()
    check = db.engine()
    with check.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM apscheduler_jobs")).scalar() == 3
    check.dispose()


def test_postgres_statement_timeout_bounds_a_blocked_poll(pg_db: Database) -> None:
    write_jobs(pg_db.url)
    locker = pg_db.engine()
    with locker.connect() as conn:
        transaction = conn.begin()
        conn.execute(sa.text("LOCK TABLE apscheduler_jobs IN ACCESS EXCLUSIVE MODE"))
        poller = StorePoller(store_for(pg_db.url, statement_timeout=1.0))
        started = time.monotonic()
        snapshot = poller.poll()
        elapsed = time.monotonic() - started
        transaction.rollback()
    poller.close()
    locker.dispose()
    assert not snapshot.up
    assert "statement timeout" in (snapshot.sources["jobs"].error or "")
    assert elapsed < 10


async def test_polling_never_stalls_an_asyncio_scheduler_on_sqlite(tmp_path: Path) -> None:
    """A reader that held a lock would make the scheduler's UPDATE fail ("database is locked")
    and an AsyncIOScheduler would then stop running jobs for good. Poll hard while it runs."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    store = SQLAlchemyJobStore(url=url)
    scheduler = AsyncIOScheduler(jobstores={"default": store}, timezone="UTC")
    runs: list[float] = []
    errors: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: errors.append(record.getMessage())  # type: ignore[method-assign]
    handler.setLevel(logging.ERROR)
    logging.getLogger("apscheduler").addHandler(handler)
    scheduler.add_listener(lambda event: runs.append(time.monotonic()), mask=EVENT_JOB_EXECUTED)
    scheduler.start()
    scheduler.add_job(
        "sample_jobs:noop", IntervalTrigger(seconds=0.2), id="fast", misfire_grace_time=None
    )
    for spec in SEED_JOBS:
        scheduler.add_job(replace_existing=True, **spec)
    poller = StorePoller(store_for(url))
    polls = 0
    deadline = time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            snapshot = await asyncio.to_thread(poller.poll)
            assert snapshot.up, snapshot.sources["jobs"].error
            polls += 1
            await asyncio.sleep(0)
    finally:
        poller.close()
    runs_before = len(runs)
    await asyncio.sleep(1.0)
    scheduler.shutdown(wait=False)
    logging.getLogger("apscheduler").removeHandler(handler)
    assert polls > 20
    assert not [e for e in errors if "locked" in e], errors
    assert runs_before >= 10, "the scheduler stopped running jobs while we polled"
    assert len(runs) > runs_before, "the scheduler stopped running jobs after we polled"


def test_a_trigger_that_never_fires_does_not_hang_the_poll(sqlite_db: Database) -> None:
    """Two interval triggers that never coincide: APScheduler's own AndTrigger spins forever
    looking for their next common time (so add_job would hang; the row must be crafted)."""
    import threading
    from datetime import UTC, datetime, timedelta

    from apscheduler.triggers.combining import AndTrigger

    write_jobs(sqlite_db.url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    never = AndTrigger(
        [
            IntervalTrigger(hours=2, start_date=start),
            IntervalTrigger(hours=2, start_date=start + timedelta(hours=1)),
        ]
    )
    state = {
        "version": 1, "id": "never", "func": "sample_jobs:noop", "trigger": never,
        "executor": "default", "args": (), "kwargs": {}, "name": "never",
        "misfire_grace_time": None, "coalesce": True, "max_instances": 1, "next_run_time": None,
    }  # fmt: skip
    _insert_raw(sqlite_db, "never", pickle.dumps(state, 5), None)
    poller = StorePoller(store_for(sqlite_db.url))
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(poller.poll()), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the poll hung on the trigger"
    snapshot = result[0]
    assert snapshot.up  # type: ignore[attr-defined]
    job = next(j for j in snapshot.jobs if j.id == "never")  # type: ignore[attr-defined]
    assert job.trigger == "and" and job.decoded
    poller.close()


def test_jobs_started_a_fraction_of_a_second_apart_keep_their_own_fire_times(
    sqlite_db: Database,
) -> None:
    """Fire times are shared between jobs of the same schedule, but two interval jobs whose
    start dates differ by 16 ms fire 16 ms apart: each keeps its own previous fire time."""
    from datetime import UTC, datetime, timedelta

    from apscheduler.schedulers.background import BackgroundScheduler

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=sqlite_db.url)}, timezone="UTC"
    )
    scheduler.start(paused=True)
    try:
        for job_id, offset in (("early", 0), ("late", 16_000)):
            trigger = IntervalTrigger(seconds=35, start_date=start + timedelta(microseconds=offset))
            scheduler.add_job(print, trigger, id=job_id, name=job_id)
    finally:
        scheduler.shutdown(wait=False)
    poller = StorePoller(store_for(sqlite_db.url))
    snapshot = poller.poll()
    poller.close()

    jobs = {job.id: job for job in snapshot.jobs}
    early, late = jobs["early"].previous_fire_time, jobs["late"].previous_fire_time
    assert early is not None and late is not None
    assert late - early == pytest.approx(0.016, abs=1e-4)
    assert (early - start.timestamp()) % 35 == pytest.approx(0, abs=1e-4)
