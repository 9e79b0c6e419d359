"""deploy/demo_scheduler.py says the backup schedule it really runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_SCHEDULER = ROOT / "deploy" / "demo_scheduler.py"


def backup_log_line(tmp_path: Path, *extra: str) -> str:
    """Start the demo app, return its backup registration line, stop it with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, str(DEMO_SCHEDULER), "--database-url",
         f"sqlite:///{tmp_path / 'app.sqlite'}", "--backup-dir", str(tmp_path / "backups"),
         "--work-dir", str(tmp_path / "work"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    found = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not found:
            line = proc.stdout.readline()
            if not line:
                break
            if "database backup of" in line:
                found = line
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    return found


def test_backup_every_is_the_schedule_logged(tmp_path: Path) -> None:
    line = backup_log_line(tmp_path, "--backup-every", "60")
    assert "every 60 s, keeping 7" in line, line
    assert "daily" not in line


def test_without_backup_every_it_is_daily(tmp_path: Path) -> None:
    line = backup_log_line(tmp_path)
    assert "daily at 02:00 UTC, keeping 7" in line, line
