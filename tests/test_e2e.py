"""End to end: the installed command serves a store a real scheduler wrote, over real HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families
from stores import write_jobs
from support import Database, free_port, need_server, stop, wait_for


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `jobstore-exporter serve ARGS` and yield its base URL once it is ready."""
    port = free_port()
    command = [
        sys.executable, "-m", "exporter", "serve", "--listen-address", f"127.0.0.1:{port}",
        "--poll-interval", "1", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output = proc.communicate()[0]
                raise AssertionError(f"exporter did not become ready:\n{output}")
            time.sleep(0.1)
        yield base
    finally:
        stop(proc)


def scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_serve_matches_apscheduler_own_next_run_times(any_db: Database) -> None:
    expected = write_jobs(any_db.url)
    with serving("--db-url", any_db.url) as base:
        text = scrape(base)
    next_runs = {
        sample.labels["job_id"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "apscheduler_job_next_run_timestamp_seconds"
    }
    assert next_runs.keys() == expected.keys()
    for job_id, when in expected.items():
        assert next_runs[job_id] == pytest.approx(when, abs=1e-3)
    assert 'apscheduler_up{jobstore="default"} 1.0' in text


def test_several_stores_from_a_config_file(sqlite_db: Database, pg_db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_jobs(sqlite_db.url)
    write_jobs(pg_db.url, pause=("report_gen",))
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "jobstores:\n"
        f"  - jobstore: local\n    db_url: '{sqlite_db.url}'\n"
        f"  - jobstore: shared\n    db_url: '{pg_db.url}'\n"
    )
    with serving("--config", str(config)) as base:
        text = scrape(base)
    assert 'apscheduler_jobs{jobstore="local",state="active"} 3.0' in text
    assert 'apscheduler_jobs{jobstore="shared",state="active"} 2.0' in text
    assert 'apscheduler_jobs{jobstore="shared",state="paused"} 1.0' in text


def test_promtool_accepts_a_real_scrape(sqlite_db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    promtool = shutil.which("promtool")
    if promtool is None:
        need_server("promtool not installed (Debian package `prometheus`)")
    write_jobs(sqlite_db.url)
    with serving("--db-url", sqlite_db.url) as base:
        text = scrape(base)
    proc = subprocess.run(
        [str(promtool), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", "promtool lint findings"


def test_password_never_leaks_while_the_database_is_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    password = "Sup3r-Secret-Value"
    port = free_port()  # nothing listens here
    url = f"postgresql://app@127.0.0.1:{port}/app"
    env = {"JOBSTORE_EXPORTER_DB_PASSWORD": password}
    command = [
        sys.executable, "-m", "exporter", "serve", "--db-url", url, "--poll-interval", "0.2",
        "--listen-address", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    # Until the failed polls are logged (start-up restarts the process once: not a fixed time).
    wait_for(lambda: any("poll failed" in line for line in lines), 60, "a failed poll logged")
    proc.terminate()
    proc.wait(timeout=10)
    reader.join(timeout=10)
    output = "".join(lines)
    assert "poll failed" in output
    assert password not in output
    assert "app:***@127.0.0.1" in output
    assert "Traceback" not in output


def test_sigterm_stops_serve_cleanly(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--db-url", sqlite_db.url,
         "--listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "serving metrics" not in (line := proc.stdout.readline() if proc.stdout else ""):
        assert line or proc.poll() is None, "serve exited early"
        assert time.monotonic() < deadline
    proc.terminate()  # SIGTERM, as docker stop and the kubelet send
    assert proc.wait(timeout=15) == 0
    assert "stopping on SIGTERM" in (proc.stdout.read() if proc.stdout else "")
