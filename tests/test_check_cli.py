"""`jobstore-exporter check`: the seed's health tree and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from stores import write_jobs
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
