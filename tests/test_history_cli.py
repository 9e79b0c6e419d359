"""`jobstore-exporter history`: recent runs and per-job statistics, read-only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from support import Database
from test_history_reader import History


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "history", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"},
    )  # fmt: skip


def seed(db: Database) -> History:
    history = History(db)
    history.insert("backup", "success", 0, 2)
    history.insert("backup", "failed", 100, 101, error_message="OSError: No space left on device")
    for i in range(8):
        history.insert("sync", "success", 200 + i, 200 + i + 0.1 * (i + 1))
    history.insert("sync", "missed", None)
    history.insert("report", "running", 300)
    return history


def test_table_of_recent_runs_with_filters(any_db: Database) -> None:
    history = seed(any_db)
    proc = run("--db-url", any_db.url, "--limit", "3")
    assert proc.returncode == 0, proc.stderr
    body = proc.stdout
    assert "report" in body and "running" in body
    assert body.count("sync") == 2  # limit 3: report, sync (missed), sync
    proc = run("--db-url", any_db.url, "--job", "backup", "--status", "failed")
    assert "No space left on device" in proc.stdout
    assert "sync" not in proc.stdout
    history.close()


def test_json_and_since(sqlite_db: Database) -> None:
    history = seed(sqlite_db)
    recent = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
    with history.engine.begin() as conn:
        conn.execute(
            history.table.insert().values(
                job_id="fresh", status="success", started_at=recent, finished_at=recent,
                duration_ms=5,
            )
        )  # fmt: skip
    rows = json.loads(run("--db-url", sqlite_db.url, "--json", "--since", "1h").stdout)
    assert [r["job_id"] for r in rows] == ["fresh"]
    assert rows[0]["duration_seconds"] == 0.005
    everything = json.loads(run("--db-url", sqlite_db.url, "--json", "--limit", "100").stdout)
    assert len(everything) == 13
    history.close()


def test_stats_per_job(any_db: Database) -> None:
    history = seed(any_db)
    proc = run("--db-url", any_db.url, "--stats", "--json")
    assert proc.returncode == 0, proc.stderr
    stats = {item["job_id"]: item for item in json.loads(proc.stdout)}
    assert stats["backup"]["runs"] == 2 and stats["backup"]["failure_rate"] == 0.5
    sync = stats["sync"]
    assert sync["runs"] == 8 and sync["failed"] == 0
    assert sync["p50_seconds"] == pytest.approx(0.4)  # nearest rank of 0.1 .. 0.8
    assert sync["p95_seconds"] == pytest.approx(0.8) == sync["max_seconds"]
    assert sync["last_success"].startswith("2026-11-20T02:03:27")
    table = run("--db-url", any_db.url, "--stats").stdout
    assert "failure rate" in table and "50.0%" in table
    history.close()


def test_bad_input_exits_2_with_one_line(sqlite_db: Database) -> None:
    seed(sqlite_db).close()
    proc = run("--db-url", sqlite_db.url, "--since", "yesterday-ish")
    assert proc.returncode == 2 and "--since 'yesterday-ish'" in proc.stderr
    proc = run("--db-url", sqlite_db.url, "--status", "exploded")
    assert proc.returncode == 2 and "--status must be one of" in proc.stderr
    proc = run("--db-url", sqlite_db.url, "--history-table", "nope")
    assert proc.returncode == 2
    assert proc.stderr.startswith("jobstore-exporter: cannot read history:")
    assert len(proc.stderr.strip().splitlines()) == 1
