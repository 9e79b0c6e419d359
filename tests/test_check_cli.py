"""`jobstore-exporter check`: the seed's health tree and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from stores import SEED_JOBS, write_jobs
from support import Database


def check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "exporter", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_detailed_tree_like_the_seed(any_db: Database) -> None:
    write_jobs(any_db.url)
    proc = check("--detailed", "--db-url", any_db.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("✓ scheduler")
    assert lines[0].endswith("Scheduler running with 3 tasks")
    assert "Tasks: 3 total, 3 active, 0 paused" in lines[1]
    assert "Upcoming Tasks (Next 3):" in lines[2]
    upcoming = "\n".join(lines[3:])
    assert "database_backup: Daily at 02:00 UTC → in " in upcoming
    assert "cleanup_temp: Every 6 hours → in 5h" in upcoming or "→ in 6h" in upcoming
    assert "report_gen: Weekly on Monday at 09:00 UTC → in " in upcoming


def test_plain_check_is_one_line(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url, pause=("report_gen",))
    proc = check("--db-url", sqlite_db.url)
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == [
        "✓ scheduler         Scheduler running with 3 tasks"
    ]


def test_json_output(sqlite_db: Database) -> None:
    expected = write_jobs(sqlite_db.url, pause=("report_gen",))
    proc = check("--json", "--db-url", sqlite_db.url)
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["healthy"] is True
    (store,) = report["jobstores"]
    assert store["tasks"] == {"total": 3, "active": 2, "paused": 1}
    upcoming = {job["job_id"]: job for job in store["upcoming"]}
    assert set(upcoming) == {"database_backup", "cleanup_temp"}
    assert upcoming["cleanup_temp"]["schedule"] == "Every 6 hours"
    seconds = upcoming["cleanup_temp"]["seconds_until"]
    assert abs(seconds - (expected["cleanup_temp"] - time.time())) < 30  # type: ignore[operator]


def test_stalled_scheduler_exits_1(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url)
    engine = sqlite_db.engine()
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = 'database_backup'"),
            {"t": time.time() - 7200},
        )
    engine.dispose()
    proc = check("--detailed", "--db-url", sqlite_db.url)
    assert proc.returncode == 1
    assert proc.stdout.startswith("✗ scheduler")
    assert "Scheduler stalled: 1 of 3 tasks overdue" in proc.stdout
    assert "database_backup: Daily at 02:00 UTC → overdue by 2h" in proc.stdout


def test_unreachable_store_exits_2(tmp_path: Path) -> None:
    proc = check("--db-url", f"sqlite:///{tmp_path / 'nope.sqlite'}")
    assert proc.returncode == 2
    assert proc.stdout.startswith("✗ scheduler")
    assert "Job store unreachable: unable to open database file" in proc.stdout
    proc = check("--json", "--db-url", f"sqlite:///{tmp_path / 'nope.sqlite'}")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["jobstores"][0]["reachable"] is False


def test_bad_config_exits_2(tmp_path: Path) -> None:
    proc = check("--config", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("jobstore-exporter: config error: cannot read config")


def _stopped_scheduler(db: Database) -> None:
    """A real scheduler with heartbeats, started and shut down cleanly (heartbeat `stopped`)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from exporter import instrument

    store = SQLAlchemyJobStore(url=db.url)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    recorder = instrument(scheduler, db.url, heartbeat_interval=0.2)
    scheduler.start()
    try:
        for spec in SEED_JOBS:
            scheduler.add_job(replace_existing=True, **spec)
    finally:
        scheduler.shutdown()
        recorder.close()
        store.engine.dispose()


def test_cleanly_stopped_scheduler_is_stopped_not_stalled(sqlite_db: Database) -> None:
    _stopped_scheduler(sqlite_db)
    engine = sqlite_db.engine()
    with engine.begin() as conn:  # its daily backup came due while it was down
        conn.execute(
            sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = 'database_backup'"),
            {"t": time.time() - 7200},
        )
    engine.dispose()
    proc = check("--detailed", "--db-url", sqlite_db.url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("■ scheduler")
    assert "Scheduler stopped" in lines[0] and "stalled" not in proc.stdout
    assert "1 of 3 tasks due, waiting for a start" in lines[0]
    upcoming = proc.stdout.split("Upcoming Tasks")[1]
    assert "database_backup" not in upcoming  # past-due is not upcoming
    assert "Due While Stopped Tasks (1):" in proc.stdout
    report = json.loads(check("--json", "--db-url", sqlite_db.url).stdout)
    assert report["jobstores"][0]["state"] == "stopped"


def test_upcoming_lists_only_future_runs(sqlite_db: Database) -> None:
    from apscheduler.triggers.interval import IntervalTrigger

    lenient = {"func": "sample_jobs:noop", "trigger": IntervalTrigger(hours=1), "id": "lenient",
               "misfire_grace_time": None}  # fmt: skip
    write_jobs(sqlite_db.url, [*SEED_JOBS, lenient])
    engine = sqlite_db.engine()
    with engine.begin() as conn:  # due 10 s ago: within the grace, neither overdue nor upcoming
        conn.execute(
            sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = 'lenient'"),
            {"t": time.time() - 10},
        )
    engine.dispose()
    proc = check("--detailed", "--db-url", sqlite_db.url)
    assert proc.returncode == 0, proc.stdout
    assert "Upcoming Tasks (Next 3):" in proc.stdout
    assert "lenient" not in proc.stdout
    report = json.loads(check("--json", "--db-url", sqlite_db.url).stdout)
    upcoming = {job["job_id"] for job in report["jobstores"][0]["upcoming"]}
    assert upcoming == {"database_backup", "cleanup_temp", "report_gen"}
    assert report["jobstores"][0]["state"] == "running"
