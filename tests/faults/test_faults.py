"""Fault injection: for each fault the sidecar keeps serving, reports it truthfully, recovers,
and nothing the scheduler wrote is lost (the sidecar never writes)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from proxy import PartitionableProxy
from stores import SEED_JOBS, write_jobs
from support import Database, PrivatePostgres

from exporter.sidecar.config import load_config
from exporter.sidecar.poller import StorePoller


def poller_for(url: str, **settings: object) -> StorePoller:
    return StorePoller(load_config(db_url=url, **settings).stores[0])


def job_ids(poller: StorePoller) -> list[str]:
    return [job.id for job in poller.snapshot.jobs]


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_sqlite_file_replaced(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    write_jobs(f"sqlite:///{db}")
    poller = poller_for(f"sqlite:///{db}")
    assert poller.poll().up and len(poller.snapshot.jobs) == 3
    # A restore from backup: a new file renamed over the old one.
    fresh = tmp_path / "restored.sqlite"
    write_jobs(f"sqlite:///{fresh}", jobs=SEED_JOBS[:1])
    os.replace(fresh, db)
    assert poller.poll().up
    assert job_ids(poller) == ["database_backup"]
    poller.close()


async def test_sqlite_file_deleted_then_back(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    write_jobs(f"sqlite:///{db}")
    poller = poller_for(f"sqlite:///{db}")
    poller.poll()
    db.unlink()
    gone = poller.poll()
    assert not gone.up and "unable to open database file" in (gone.sources["jobs"].error or "")
    assert len(gone.jobs) == 3  # the last known jobs are still served
    assert not db.exists()  # and we did not create an empty file in its place
    write_jobs(f"sqlite:///{db}")
    assert poller.poll().up
    poller.close()


async def test_sqlite_locked_by_a_writer_for_30_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rollback-journal mode: an exclusive writer blocks readers. Polls fail fast (busy timeout),
    the event loop keeps serving, and the first poll after the lock recovers."""
    db = tmp_path / "app.sqlite"
    write_jobs(f"sqlite:///{db}")
    poller = poller_for(f"sqlite:///{db}", statement_timeout=1)
    poller.poll()
    task = asyncio.create_task(poller.run(interval=0.5, max_backoff=1.0))
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE apscheduler_jobs SET next_run_time = next_run_time + 1")
    ticks = 0
    try:
        await eventually(lambda: not poller.snapshot.up, 10, "lock reported")
        assert "database is locked" in (poller.snapshot.sources["jobs"].error or "")
        held_until = time.monotonic() + 30
        while time.monotonic() < held_until:  # the loop stays responsive all along
            await asyncio.sleep(0.1)
            ticks += 1
            assert len(poller.snapshot.jobs) == 3 and not poller.snapshot.up
    finally:
        writer.execute("COMMIT")
        writer.close()
    await eventually(lambda: poller.snapshot.up, 10, "recovery after the lock")
    task.cancel()
    poller.close()
    assert ticks > 250
    failed_polls = [r for r in caplog.records if "job store poll failed" in r.getMessage()]
    assert len(failed_polls) >= 5
    assert poller.snapshot.sources["jobs"].errors_total == len(failed_polls)  # each counted


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_table_dropped_and_recreated(kind: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue(
        {"sqlite": "sqlite_db", "postgresql": "pg_db", "mariadb": "mariadb_db"}[kind]
    )
    write_jobs(db.url)
    poller = poller_for(db.url)
    poller.poll()
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE apscheduler_jobs"))
    engine.dispose()
    dropped = poller.poll()
    assert not dropped.up and len(dropped.jobs) == 3
    assert "apscheduler_jobs" in (dropped.sources["jobs"].error or "")
    write_jobs(db.url, jobs=SEED_JOBS[1:])
    assert poller.poll().up
    assert job_ids(poller) == ["cleanup_temp", "report_gen"]
    poller.close()


async def test_network_partition_to_postgres(private_pg: PrivatePostgres) -> None:
    write_jobs(private_pg.url)
    proxy = PartitionableProxy(private_pg.port)
    url = sa.make_url(private_pg.url).set(port=proxy.port).render_as_string(False)
    poller = poller_for(url, statement_timeout=1)
    task = asyncio.create_task(poller.run(interval=0.5, max_backoff=1.0))
    try:
        await eventually(lambda: poller.snapshot.up, 10, "first poll")
        assert poller.deadline == 1.5  # one poll interval plus one statement timeout
        proxy.partition()
        took = await eventually(lambda: not poller.snapshot.up, poller.deadline + 5, "reported")
        assert took <= poller.deadline + 2
        assert "poll did not finish" in (poller.snapshot.sources["jobs"].error or "")
        assert len(poller.snapshot.jobs) == 3
        await asyncio.sleep(2)  # still partitioned: still reported down, loop alive
        assert not poller.snapshot.up
        proxy.heal()
        await eventually(lambda: poller.snapshot.up, 20, "recovery after the partition")
    finally:
        task.cancel()
        proxy.close()
        poller.close()


async def test_scheduler_writing_fast_while_we_poll_hard(tmp_path: Path) -> None:
    """Many jobs firing every 0.2 s (rollback journal, the default): the scheduler must never
    see "database is locked" because of our reads, and must keep its pace."""
    url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    scheduler = AsyncIOScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone="UTC")
    errors: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: errors.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("apscheduler").addHandler(handler)
    runs: list[str] = []
    scheduler.add_listener(lambda event: runs.append(event.job_id), EVENT_JOB_EXECUTED)
    scheduler.start()
    for i in range(20):
        scheduler.add_job(
            "sample_jobs:noop", IntervalTrigger(seconds=0.2), id=f"fast_{i}",
            misfire_grace_time=None, coalesce=False,
        )  # fmt: skip
    poller = poller_for(url)
    # Four polls a second through the sidecar's own loop: sixty times the default rate.
    task = asyncio.create_task(poller.run(interval=0.25, max_backoff=0.25))
    outcomes: list[bool] = []
    for _ in range(16):
        await asyncio.sleep(0.25)
        outcomes.append(poller.snapshot.up)
    task.cancel()
    poller.close()
    scheduler.shutdown(wait=False)
    logging.getLogger("apscheduler").removeHandler(handler)
    assert outcomes.count(True) >= 12
    assert not [e for e in errors if "locked" in e], errors
    assert len(runs) > 200  # 20 jobs every 0.2 s for 4 s: about 400 when unobserved
    assert {f"fast_{i}" for i in range(20)} <= set(runs)


def test_disk_full_for_the_history_writer(tmp_path: Path) -> None:
    """History on a full disk: the writer keeps the rows it could not write and writes them all
    once space is back; the scheduler runs on unaffected."""
    import shutil
    import subprocess

    from apscheduler.events import EVENT_JOB_ERROR
    from apscheduler.schedulers.background import BackgroundScheduler
    from support import need_server

    from exporter.kit import instrument

    disk = tmp_path / "disk"
    disk.mkdir()
    mount = shutil.which("mount")
    proc = subprocess.run(
        [mount or "mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        need_server(f"cannot mount a tmpfs to fill: {proc.stderr.strip()}")
    try:
        url = f"sqlite:///{disk / 'history.sqlite'}"
        scheduler = BackgroundScheduler(timezone="UTC")
        observed: list[str] = []
        scheduler.add_listener(lambda e: observed.append(e.job_id), EVENT_JOB_ERROR)
        recorder = instrument(scheduler, url, heartbeat_interval=None, retention_days=None)
        scheduler.start()
        scheduler.add_job(
            "sample_jobs:fail", IntervalTrigger(seconds=0.02), id="noisy", max_instances=5
        )
        deadline = time.monotonic() + 30
        while recorder.stats().write_errors == 0:  # until the disk is full
            assert time.monotonic() < deadline, "the disk never filled up"
            time.sleep(0.1)
        full_at = len(observed)
        time.sleep(1)  # runs go on while nothing can be written
        scheduler.pause()
        assert recorder.stats().pending > 0 and recorder.stats().dropped_rows == 0
        # Up to 50 runs in that second; a loaded machine runs fewer, a stalled scheduler none.
        during = len(observed) - full_at
        assert during >= 10, "the scheduler stopped running jobs while history could not be written"
        subprocess.run([mount or "mount", "-o", "remount,size=16m", str(disk)], check=True)
        scheduler.shutdown(wait=True)  # flushes what the writer kept
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT COUNT(*) FROM job_execution WHERE status = 'failed'")
            ).scalar()
        engine.dispose()
        assert rows == len(observed)
    finally:
        if "scheduler" in locals() and scheduler.running:  # a failed assertion above
            scheduler.shutdown(wait=False)
        if "recorder" in locals():
            recorder.close(timeout=1.0)
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
