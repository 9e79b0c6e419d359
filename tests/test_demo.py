"""`jobstore-exporter demo`: the README's first command, run as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support import free_port

SOURCES = {"jobs", "history", "heartbeats", "backups"}


def scrape(address: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def test_a_fresh_demo_shows_every_signal_within_a_minute(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--dir", str(tmp_path / "demo"),
         "--listen-address", address],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        started = time.monotonic()
        deadline = started + 60
        printed = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            printed.append(line)
            if "metrics:" in line or not line:
                break
        assert f"http://{address}/metrics" in "".join(printed), "".join(printed)

        def complete(samples: list[tuple[str, dict[str, str], float]]) -> bool:
            names = {name for name, _, _ in samples}
            polled = {
                lab["source"]
                for n, lab, _ in samples
                if n == "jobstore_exporter_last_poll_success_timestamp_seconds"
            }
            return "apscheduler_backup_last_run_success" in names and polled >= SOURCES

        samples = scrape(address)
        while not complete(samples) and time.monotonic() < deadline:
            time.sleep(0.5)
            samples = scrape(address)
        assert complete(samples), sorted({name for name, _, _ in samples})
        value = {name: v for name, _, v in samples}
        assert value["apscheduler_backup_last_run_success"] == 1
        errors = {
            labels["source"]: v
            for name, labels, v in samples
            if name == "jobstore_exporter_poll_errors_total"
        }
        assert set(errors) >= SOURCES and not any(errors.values()), errors
        jobs = {lab["job_id"]: lab for n, lab, _ in samples if n == "apscheduler_job_info"}
        assert jobs["database_backup"]["schedule"] == "Every 5 minutes"
        assert jobs["cleanup_temp"]["schedule"] == "Every 6 hours"
        assert jobs["report_gen"]["schedule"] == "Weekly on Monday at 09:00 UTC"
        assert jobs["sync_inventory"]["schedule"] == "Every 20 seconds"
        assert list((tmp_path / "demo" / "backups").glob("demo_*.sqlite"))
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
    assert proc.returncode == 0, rest
    assert "stopping on SIGINT" in rest and "Traceback" not in rest


def test_demo_reports_a_busy_port_in_one_line_before_starting_anything(tmp_path: Path) -> None:
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
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"jobstore-exporter demo: cannot listen on 127.0.0.1:{port}: ")
    assert "--listen-address" in line
    assert not (tmp_path / "demo").exists()  # nothing was started or written
