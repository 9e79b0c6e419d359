"""`serve` runs on glibc's allocator (PYTHONMALLOC=malloc) unless the operator chose otherwise.

Whether memory then stays flat is measured by the churn soak (bench/churn.py), not here; this
checks the process a user starts: same pid, the allocator switched, an explicit choice kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import free_port, stop, wait_for

from exporter.sidecar import memory

pytestmark = pytest.mark.skipif(
    not memory.on_glibc(), reason="not glibc: the allocator is left alone"
)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.mark.parametrize("chosen", [None, "pymalloc"])
def test_serve_switches_to_the_system_allocator_unless_chosen(
    tmp_path: Path, chosen: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    if chosen is not None:
        env["PYTHONMALLOC"] = chosen
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--listen-address", f"127.0.0.1:{port}",
         "--db-url", f"sqlite:///{tmp_path / 'app.sqlite'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for(lambda: _healthy(port) or proc.poll() is not None, 30, "the exporter to serve")
        assert proc.poll() is None, proc.communicate()[0]
        # The process that answers is the one started (same pid: signals and supervisors
        # still reach it), running on the allocator asked for.
        assert _environ(proc.pid).get("PYTHONMALLOC") == (chosen or "malloc")
    finally:
        stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
