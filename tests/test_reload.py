"""Configuration reload: SIGHUP, and POST /-/reload once the operator enabled it; a bad new
configuration changes nothing."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from stores import write_jobs
from support import Database, free_port, wait_for

from exporter.sidecar.config import load_config
from exporter.sidecar.serving.server import Sidecar, create_app
from exporter.sidecar.serving.web_config import load_web_config

LIFECYCLE = "enable_lifecycle: true\n"


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
        f"{LIFECYCLE}poll_interval: 0.5\njobstores:\n"
        f"  - jobstore: one\n    db_url: '{sqlite_db.url}'\n"
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
            f"{LIFECYCLE}poll_interval: 0.5\njobstores:\n"
            f"  - jobstore: one\n    db_url: '{sqlite_db.url}'\n"
            f"  - jobstore: two\n    db_url: '{other}'\n"
        )
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: 'apscheduler_jobs{jobstore="two",state="paused"} 1.0' in _safe(base))
        # A bad file is refused with a reason; the running configuration keeps serving.
        config.write_text(f"{LIFECYCLE}poll_interval: -1\njobstores: []\n")
        status, text = post_reload(base)
        assert status == 400 and "poll_interval" in text
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        body = _safe(base)
        assert 'jobstore="one"' in body and 'jobstore="two"' in body
        # POST /-/reload: the first store goes away.
        config.write_text(
            f"{LIFECYCLE}poll_interval: 0.5\njobstores:\n  - jobstore: two\n    db_url: '{other}'\n"
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


def _serve(
    config: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--config", str(config),
         "--listen-address", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_reload_endpoint_is_404_without_enable_lifecycle_and_sighup_still_reloads(
    tmp_path: Path, sqlite_db: Database
) -> None:
    write_jobs(sqlite_db.url)
    config = tmp_path / "exporter.yaml"
    config.write_text(
        f"poll_interval: 0.5\njobstores:\n  - jobstore: one\n    db_url: '{sqlite_db.url}'\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(config, port)
    try:
        wait_for(lambda: 'apscheduler_up{jobstore="one"} 1.0' in _safe(base))
        config.write_text(
            f"poll_interval: 0.5\njobstores:\n  - jobstore: two\n    db_url: '{sqlite_db.url}'\n"
        )
        status, _ = post_reload(base)
        assert status == 404
        assert 'jobstore="one"' in _safe(base)  # nothing was reloaded
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: 'apscheduler_up{jobstore="two"} 1.0' in _safe(base))
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    assert output.count("configuration reloaded") == 1, output


@pytest.mark.parametrize("how", ["flag", "env"])
def test_enable_lifecycle_by_flag_or_environment(
    how: str, tmp_path: Path, sqlite_db: Database
) -> None:
    write_jobs(sqlite_db.url)
    config = tmp_path / "exporter.yaml"
    config.write_text(f"db_url: '{sqlite_db.url}'\npoll_interval: 0.5\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if how == "flag":
        proc = _serve(config, port, "--enable-lifecycle")
    else:
        proc = _serve(config, port, env={"JOBSTORE_EXPORTER_ENABLE_LIFECYCLE": "true"})
    try:
        wait_for(lambda: "apscheduler_up" in _safe(base))
        status, text = post_reload(base)
        assert status == 200 and text.startswith("reloaded: 1 job store(s)"), text
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


async def test_reload_endpoint_sits_behind_basic_auth(sqlite_db: Database, tmp_path: Path) -> None:
    write_jobs(sqlite_db.url)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    web_file = tmp_path / "web.yml"
    web_file.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    config = load_config(db_url=sqlite_db.url, poll_interval=3600, enable_lifecycle=True)
    sidecar = Sidecar(config, loader=lambda: config)
    server = TestServer(create_app(sidecar, web_config=load_web_config(web_file)))
    await server.start_server()
    try:
        async with ClientSession() as session:
            url = server.make_url("/-/reload")
            async with session.post(url) as resp:
                assert resp.status == 401
            token = base64.b64encode(b"alice:pw").decode()
            async with session.post(url, headers={"Authorization": f"Basic {token}"}) as resp:
                assert resp.status == 200
                assert (await resp.text()).startswith("reloaded: 1 job store(s)")
    finally:
        await server.close()
