"""Command output as scripts and terminals get it: one result is one line off a terminal,
Rich's look (boxes, "…" cuts at the terminal's width) on one, and one wording for every
duration, age and size."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stores import SEED_JOBS, write_jobs
from support import Database
from test_history_reader import History

from exporter.shared.backup_files import backup_name

LONG = "x" * 200


def piped(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command with its output piped, and no COLUMNS to hint at a width."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=cwd,
    )  # fmt: skip


def on_terminal(*args: str, columns: int = 80) -> str:
    """The real command on a pseudo-terminal ``columns`` wide; everything it printed."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", *args],
        stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True,
    )  # fmt: skip
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        proc.wait(timeout=30)
        os.close(controller)
    return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_check_verdict_and_tree_stay_one_line_each(sqlite_db: Database) -> None:
    url = f"postgresql://monitor:pw@127.0.0.1:1/{LONG}"
    proc = piped("check", "--db-url", url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("✗ scheduler") and "Job store unreachable" in line and LONG in line
    assert ":pw@" not in proc.stdout + proc.stderr

    long_job = {**SEED_JOBS[1], "id": "j" * 200}
    write_jobs(sqlite_db.url, [*SEED_JOBS, long_job])
    proc = piped("check", "--detailed", "--db-url", sqlite_db.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 6  # verdict, tasks, "Upcoming", three tasks
    assert any(line.endswith("j" * 200 + ": Every 6 hours → in 5h") for line in lines), lines


def test_history_rows_stay_one_line_each(sqlite_db: Database) -> None:
    history = History(sqlite_db)
    error = "ConnectionError: " + LONG
    history.insert("sync_inventory", "failed", 0, 0.3, error_message=error)
    history.insert("database_backup", "success", 10, 11.2)
    history.close()
    proc = piped("history", "--db-url", sqlite_db.url)
    assert proc.returncode == 0, proc.stderr
    (failed,) = [line for line in proc.stdout.splitlines() if "sync_inventory" in line]
    assert error in failed and "failed" in failed and "300 ms" in failed
    (backup,) = [line for line in proc.stdout.splitlines() if "database_backup" in line]
    assert "2026-11-20 02:00:10" in backup and "1.20 s" in backup

    proc = piped("history", "--db-url", sqlite_db.url, "--stats")
    assert proc.returncode == 0, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if "sync_inventory" in line]) == 1


def test_history_on_an_80_column_terminal_cuts_errors_with_an_ellipsis(sqlite_db: Database):
    history = History(sqlite_db)
    history.insert("sync_inventory", "failed", 0, 0.3, error_message="ConnectionError: " + LONG)
    history.close()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", on_terminal("history", "--db-url", sqlite_db.url))
    assert "┏" in shown and "Job executions (UTC)" in shown  # Rich's table
    (row,) = [line for line in shown.splitlines() if "sync_inventory" in line]
    assert "│ 2026-11-20 02:00:00 │" in row and "│ ConnectionError:" in row
    assert row.endswith("… │") and len(row) == 80


def test_backup_list_rows_stay_one_line_in_one_wording(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    taken = datetime.now(UTC) - timedelta(seconds=20)
    recent = backups / backup_name("app", taken, "sqlite")
    recent.write_bytes(b"\0" * 8810)
    long_name = backup_name("d" * 150, taken - timedelta(days=2, hours=3), "sql")
    (backups / long_name).write_bytes(b"")
    proc = piped("backup", "list", "--backup-dir", str(backups))
    assert proc.returncode == 0, proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if recent.name in line]
    age = re.search(r" (\d+)s ago ", row)
    assert "8.6 KiB" in row and age is not None and 20 <= int(age.group(1)) < 60, row
    assert taken.strftime("%Y-%m-%d %H:%M:%S") in row
    (row,) = [line for line in proc.stdout.splitlines() if long_name in line]
    assert "2d ago" in row and "0 B" in row and "empty: 0 bytes: a failed backup" in row


def test_every_error_is_one_line_off_a_terminal(tmp_path: Path) -> None:
    proc = piped("check", "--bogus-flag")
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "No such option: --bogus-flag" in line and "--help" in line

    proc = piped("history", "--db-url", f"sqlite:///{tmp_path}/a.sqlite", "--since", LONG)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("jobstore-exporter: --since") and LONG in line

    missing = tmp_path / (LONG + ".yaml")
    proc = piped("check", "--config", str(missing))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "config error" in line and LONG in line

    proc = piped("history", "--db-url", f"sqlite:///{tmp_path}/{LONG}/a.sqlite")
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("jobstore-exporter: cannot read history:") and LONG in line
