"""Heartbeats, crash recovery and retention, against real databases and a real killed process."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from kit_helpers import heartbeats, history, wait_for

from exporter.kit import instrument
from exporter.kit.ddl import ensure_tables
from exporter.kit.heartbeat import utcnow
from exporter.shared.tables import heartbeat_table, history_table

HOST = socket.gethostname()


def make_tables(engine: sa.Engine) -> tuple[sa.Table, sa.Table]:
    metadata = sa.MetaData()
    tables = history_table(metadata), heartbeat_table(metadata)
    ensure_tables(engine, tables)
    return tables


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_heartbeats_follow_the_scheduler_state(any_db):
    engine = any_db.engine()
    scheduler = BackgroundScheduler(timezone="UTC")
    recorder = instrument(scheduler, any_db.url, heartbeat_interval=0.2)
    assert recorder.flush()
    assert heartbeats(engine) == []  # nothing before the scheduler starts

    scheduler.start()
    (first,) = wait_for(lambda: heartbeats(engine), what="a heartbeat")
    assert first["scheduler_id"] == recorder.scheduler_id == f"{HOST}:{os.getpid()}"
    assert (first["host"], first["pid"], first["state"]) == (HOST, os.getpid(), "running")
    assert first["version"].startswith("jobstore-exporter/")
    assert abs(first["last_seen"] - utcnow()) < timedelta(seconds=5)
    # Upserted: one row whose last_seen moves on (MariaDB keeps whole seconds).
    wait_for(
        lambda: [h for h in heartbeats(engine) if h["last_seen"] > first["last_seen"]],
        what="a later heartbeat",
    )
    assert len(heartbeats(engine)) == 1

    scheduler.pause()
    wait_for(lambda: heartbeats(engine)[0]["state"] == "paused", what="paused")
    scheduler.resume()
    wait_for(lambda: heartbeats(engine)[0]["state"] == "running", what="running again")
    scheduler.shutdown()
    (last,) = heartbeats(engine)  # written before shutdown() returned
    assert last["state"] == "stopped" and last["started_at"] == first["started_at"]
    time.sleep(0.5)
    assert heartbeats(engine)[0]["last_seen"] == last["last_seen"]  # no beats while stopped
    recorder.close()


def test_a_second_scheduler_in_the_process_gets_its_own_id(sqlite_db):
    one, two = BackgroundScheduler(), BackgroundScheduler()
    first, second = instrument(one, sqlite_db.url), instrument(two, sqlite_db.url)
    try:
        assert first.scheduler_id != second.scheduler_id
        assert second.scheduler_id.startswith(f"{HOST}:{os.getpid()}:")
    finally:
        first.close()
        second.close()


def test_startup_closes_only_runs_that_cannot_be_alive(any_db):
    engine = any_db.engine()
    runs, beats = make_tables(engine)
    now = utcnow()
    dead_pid = a_dead_pid()
    long_ago = now - timedelta(minutes=10)
    with engine.begin() as conn:
        conn.execute(
            beats.insert(),
            [
                {
                    "scheduler_id": "gone",
                    "host": "elsewhere",
                    "pid": 7,
                    "state": "running",
                    "started_at": long_ago,
                    "last_seen": long_ago,
                },
                {
                    "scheduler_id": "alive",
                    "host": "elsewhere",
                    "pid": 8,
                    "state": "running",
                    "started_at": long_ago,
                    "last_seen": now,
                },
            ],
        )
        rows = [
            ("me", HOST, os.getpid()),  # this scheduler's previous incarnation
            ("gone", "elsewhere", 7),  # stale heartbeat
            ("alive", "elsewhere", 8),  # fresh heartbeat
            (f"{HOST}:{dead_pid}", HOST, dead_pid),  # no heartbeat, pid gone on this host
            (f"{HOST}:{os.getppid()}", HOST, os.getppid()),  # no heartbeat, pid alive
            ("far:1", "far", 1),  # no heartbeat, another host: cannot tell
            (None, None, None),  # not ours (e.g. Aegis)
        ]
        conn.execute(
            runs.insert(),
            [
                {
                    "job_id": f"job-{i}",
                    "status": "running",
                    "started_at": long_ago,
                    "run_id": str(uuid.uuid4()),
                    "scheduler_id": sid,
                    "host": host,
                    "pid": pid,
                }
                for i, (sid, host, pid) in enumerate(rows)
            ],
        )

    scheduler = BackgroundScheduler(timezone="UTC")
    recorder = instrument(scheduler, any_db.url, scheduler_id="me")
    assert recorder.flush()
    status = {r["scheduler_id"]: r for r in history(engine)}
    closed = {sid for sid, r in status.items() if r["status"] == "failed"}
    assert closed == {"me", "gone", f"{HOST}:{dead_pid}"}
    assert {r["status"] for sid, r in status.items() if sid not in closed} == {"running"}
    gone = status["gone"]
    assert "scheduler gone stopped while this run was in progress" in gone["error_message"]
    assert abs(gone["finished_at"] - long_ago) < timedelta(seconds=1)  # its last sign of life
    recorder.close()


CRASHING_APP = textwrap.dedent(
    """
    import sys, time
    from apscheduler.schedulers.background import BackgroundScheduler
    from exporter.kit import instrument

    scheduler = BackgroundScheduler(timezone="UTC")
    instrument(scheduler, sys.argv[1], heartbeat_interval=0.2, scheduler_id=sys.argv[2] or None)
    scheduler.add_job(time.sleep, args=[60], id="long-job")
    scheduler.start()
    time.sleep(60)
    """
)


@pytest.mark.parametrize("restart", ["new-pid", "same-id"])
def test_a_killed_scheduler_runs_are_closed_on_the_next_start(any_db, restart):
    engine = any_db.engine()
    fixed_id = "worker-1" if restart == "same-id" else ""
    child = subprocess.Popen([sys.executable, "-c", CRASHING_APP, any_db.url, fixed_id])
    try:
        (row,) = wait_for(
            lambda: [r for r in history(engine) if r["status"] == "running"],
            timeout=30,
            what="the child's running row",
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert row["pid"] == child.pid and row["job_id"] == "long-job"
    if restart == "new-pid":
        # A new process on the same host: the old pid is gone and its heartbeats stopped.
        wait_for(
            lambda: utcnow() - heartbeats(engine)[0]["last_seen"] > timedelta(seconds=1.2),
            what="the dead scheduler's heartbeat to age",
        )
    scheduler = BackgroundScheduler(timezone="UTC")
    recorder = instrument(
        scheduler, any_db.url, heartbeat_interval=0.2, scheduler_id=fixed_id or None
    )
    assert recorder.flush()
    (after,) = history(engine)
    assert after["status"] == "failed" and after["run_id"] == row["run_id"]
    assert "stopped while this run was in progress" in after["error_message"]
    recorder.close()


def test_retention_prunes_old_finished_rows_in_batches(any_db):
    engine = any_db.engine()
    runs, beats = make_tables(engine)
    now = utcnow()
    old = now - timedelta(days=40)
    with engine.begin() as conn:
        conn.execute(
            runs.insert(),
            [
                {
                    "job_id": "old",
                    "status": "success",
                    "finished_at": old,
                    "run_id": str(uuid.uuid4()),
                }
                for _ in range(1_200)  # more than one batch
            ],
        )
        for values in (
            {"job_id": "old-missed", "status": "missed", "scheduled_run_time": old},
            {"job_id": "old-running", "status": "running", "started_at": old},
            {"job_id": "recent", "status": "failed", "finished_at": now - timedelta(days=2)},
        ):
            conn.execute(runs.insert().values(values))
        conn.execute(
            beats.insert(),
            [
                {"scheduler_id": "ancient", "state": "stopped", "last_seen": old},
                {"scheduler_id": "recent", "state": "stopped", "last_seen": now},
            ],
        )

    kept = BackgroundScheduler(timezone="UTC")
    keeper = instrument(kept, any_db.url, retention_days=None)
    kept.start()
    assert keeper.flush()
    assert len(history(engine)) == 1_203
    kept.shutdown()
    keeper.close()

    scheduler = BackgroundScheduler(timezone="UTC")
    recorder = instrument(scheduler, any_db.url, retention_days=30)
    scheduler.start()  # retention runs while the scheduler does
    wait_for(lambda: len(history(engine)) == 2, what="old rows pruned")
    assert sorted(r["job_id"] for r in history(engine)) == ["old-running", "recent"]
    wait_for(
        lambda: "ancient" not in [h["scheduler_id"] for h in heartbeats(engine)],
        what="old heartbeats pruned",
    )
    scheduler.shutdown()
    recorder.close()


def test_stopped_is_written_even_when_shutdown_meets_a_beat_in_flight(sqlite_db):
    """A beat already writing when the scheduler shuts down must not swallow the `stopped` one.

    The row would otherwise say `paused` (or `running`) after shutdown() returned, and a process
    that exits right then leaves the exporter believing in a live scheduler until the beat ages.
    """
    engine = sqlite_db.engine()
    scheduler = BackgroundScheduler(timezone="UTC")
    recorder = instrument(scheduler, sqlite_db.url, heartbeat_interval=60)
    scheduler.start()
    wait_for(lambda: heartbeats(engine), what="the first heartbeat")
    # A write may still be under way (the start's retention pass follows the first beat): the
    # blocker waits for it, then holds the write lock the next beat waits on.
    blocker = sqlite3.connect(sa.make_url(sqlite_db.url).database, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")
    scheduler.pause()  # asks for a beat: it reads `paused`, then waits for the lock
    time.sleep(0.3)
    stopper = threading.Thread(target=scheduler.shutdown)
    stopper.start()  # asks for the final beat while the `paused` one is still in flight
    time.sleep(0.3)
    blocker.rollback()
    blocker.close()
    stopper.join(10)
    assert not stopper.is_alive()
    assert heartbeats(engine)[0]["state"] == "stopped"
    recorder.close()
