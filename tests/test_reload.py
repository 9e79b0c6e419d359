"""Configuration reload: SIGHUP and POST /-/reload; a bad new configuration changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stores import write_jobs
from support import Database, free_port, wait_for


def metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        return resp.read().decode()


def post_reload(base: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{base}/-/reload", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_reload_by_signal_and_by_http(tmp_path: Path, sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url)
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    write_jobs(other, pause=("report_gen",))
    config = tmp_path / "exporter.yaml"
    config.write_text(
        f"poll_interval: 0.5\njobstores:\n  - jobstore: one\n    db_url: '{sqlite_db.url}'\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--config", str(config),
         "--listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        wait_for(lambda: 'apscheduler_up{jobstore="one"} 1.0' in _safe(base))
        # SIGHUP: a second store appears, the first keeps its state.
        config.write_text(
            "poll_interval: 0.5\njobstores:\n"
            f"  - jobstore: one\n    db_url: '{sqlite_db.url}'\n"
            f"  - jobstore: two\n    db_url: '{other}'\n"
        )
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: 'apscheduler_jobs{jobstore="two",state="paused"} 1.0' in _safe(base))
        # A bad file is refused with a reason; the running configuration keeps serving.
        config.write_text("poll_interval: -1\njobstores: []\n")
        status, text = post_reload(base)
        assert status == 400 and "poll_interval" in text
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        body = _safe(base)
        assert 'jobstore="one"' in body and 'jobstore="two"' in body
        # POST /-/reload: the first store goes away.
        config.write_text(
            f"poll_interval: 0.5\njobstores:\n  - jobstore: two\n    db_url: '{other}'\n"
        )
        status, text = post_reload(base)
        assert status == 200 and text.startswith("reloaded: 1 job store(s)")
        body = _safe(base)
        assert 'jobstore="one"' not in body and 'apscheduler_up{jobstore="two"} 1.0' in body
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    assert output.count("configuration reloaded") == 2, output
    assert output.count("reload rejected, keeping the running configuration") == 2, output


def _safe(base: str) -> str:
    try:
        return metrics(base)
    except OSError:
        return ""
