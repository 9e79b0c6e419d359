"""Ctrl-C and SIGTERM stop `serve` the same clean way: one log line naming the signal, exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from stores import write_jobs
from support import Database, free_port, wait_for


def ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_alike_on_ctrl_c_and_sigterm(
    sig: signal.Signals, sqlite_db: Database, tmp_path: Path
) -> None:
    write_jobs(sqlite_db.url)
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--db-url", sqlite_db.url,
         "--listen-address", address, "--poll-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_for(lambda: ready(address) or proc.poll() is not None, 30, "/readyz")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"stopping on {sig.name}" in err
    assert "Traceback" not in out + err
