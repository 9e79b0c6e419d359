"""`jobstore-exporter demo`: the README's first command, run as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support import free_port, stop


def test_demo_runs_the_seed_jobs_and_serves_them(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--dir", str(tmp_path / "demo"),
         "--listen-address", address, "--poll-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        printed = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            printed.append(line)
            if "metrics:" in line:
                break
        assert f"http://{address}/metrics" in "".join(printed), "".join(printed)
        # The sidecar needs one poll after the scheduler wrote the jobs.
        jobs: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline and len(jobs) < 3:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            jobs = {
                s.labels["job_id"]: s.labels
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "apscheduler_job_info"
            }
            time.sleep(0.2)
        assert jobs["database_backup"]["schedule"] == "Daily at 02:00 UTC"
        assert jobs["cleanup_temp"]["schedule"] == "Every 6 hours"
        assert jobs["report_gen"]["schedule"] == "Weekly on Monday at 09:00 UTC"
        assert (tmp_path / "demo" / "demo.sqlite").exists()
    finally:
        stop(proc, signal.SIGINT, timeout=15)


def test_demo_reports_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "demo", "--dir", str(tmp_path / "demo"),
             "--listen-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
