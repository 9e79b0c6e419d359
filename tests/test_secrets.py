"""The database password never appears in logs, pages, metrics or errors, on any failure path.

A real PostgreSQL cluster with password authentication; the exporter and the CLI are driven into
every failure we can cause (server down, wrong password, missing table, missing history table,
bad configuration), and everything they print or serve is searched for the password, in plain
and URL-quoted form.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from stores import write_jobs
from support import PrivatePostgres, free_port

from exporter.kit import register_backup_job
from exporter.kit.engine import create_kit_engine

PASSWORD = "Sekr3t/pa ss@word"  # characters that need quoting in a URL
FORMS = (PASSWORD, urllib.parse.quote(PASSWORD, safe=""), urllib.parse.quote_plus(PASSWORD))


def leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def set_password(cluster: PrivatePostgres) -> None:
    engine = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        quoted = PASSWORD.replace("'", "''")  # DDL takes no bind parameters
        conn.execute(sa.text(f"CREATE ROLE app LOGIN PASSWORD '{quoted}'"))
        conn.execute(sa.text("GRANT pg_read_all_data TO app"))
    engine.dispose()
    hba = cluster.data_dir / "pg_hba.conf"
    hba.write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    cluster.stop()
    cluster.start()


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()
    except OSError:
        return ""


def cli(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    return proc.stdout + proc.stderr


def test_no_failure_path_shows_the_password(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    set_password(private_pg)
    write_jobs(private_pg.url)
    app_url = f"postgresql://app@127.0.0.1:{private_pg.port}/postgres"
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text("not-the-password\n")
    seen: dict[str, str] = {}

    # The CLI, with the password in the environment, in a file, and inside the URL itself.
    quoted = urllib.parse.quote(PASSWORD, safe="")
    in_url = f"postgresql://app:{quoted}@127.0.0.1:{private_pg.port}/postgres"
    env = {"JOBSTORE_EXPORTER_DB_PASSWORD": PASSWORD}
    seen["check ok"] = cli("check", "--detailed", "--db-url", app_url, env=env)
    assert "Scheduler running with 3 tasks" in seen["check ok"]
    seen["check url"] = cli("check", "--json", "--db-url", in_url, env={})
    seen["history missing table"] = cli("history", "--db-url", app_url, env=env)
    seen["wrong password"] = cli(
        "check", "--db-url", in_url.replace("Sekr3t", "Wr0ng"), "--json", env={}
    )
    assert "password authentication failed" in seen["wrong password"]
    seen["bad config"] = cli("serve", "--db-url", in_url, "--poll-interval", "-1", env={})
    seen["backup run"] = cli(
        "backup", "run", "--db-url", app_url, "--db-password-file", str(password_file),
        "--backup-dir", str(password_file / "below-a-file"), env={},
    )  # fmt: skip

    assert "jobstore-exporter:" in seen["backup run"]  # it failed, and said why

    # The sidecar: up, then the history table missing, then the server down, then back.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--db-url", app_url,
         "--db-password-file", str(password_file), "--poll-interval", "0.3",
         "--listen-address", f"127.0.0.1:{port}", "--log-level", "debug",
         "--statement-timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while 'apscheduler_up{jobstore="default"} 1.0' not in fetch(f"{base}/metrics"):
            assert time.monotonic() < deadline, "exporter never came up"
            time.sleep(0.2)
        for path in ("/metrics", "/", "/api/status", "/readyz"):
            seen[f"up {path}"] = fetch(base + path)
        private_pg.stop()
        time.sleep(2)
        for path in ("/metrics", "/", "/api/status", "/readyz"):
            seen[f"down {path}"] = fetch(base + path)
        assert 'apscheduler_up{jobstore="default"} 0.0' in seen["down /metrics"]
        assert "***" in seen["down /api/status"]
        private_pg.start()
        time.sleep(3)
        seen["recovered /metrics"] = fetch(f"{base}/metrics")
    finally:
        proc.terminate()
        seen["serve log"] = proc.communicate(timeout=15)[0]
    assert "job store poll failed" in seen["serve log"]
    assert "history poll failed" in seen["serve log"]

    found = {where: leaks(text) for where, text in seen.items() if leaks(text)}
    assert not found, f"the password leaked in: {sorted(found)}"


SSL_PASSPHRASE = "Key-passphrase/42"


def test_a_password_in_the_url_query_is_hidden_everywhere(
    private_pg: PrivatePostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """libpq and psycopg accept ?password= (and ?sslpassword=): the sidecar, the CLI and the
    kit must hide those as they hide user:password@."""
    set_password(private_pg)
    write_jobs(private_pg.url)
    admin = sa.create_engine(private_pg.url)
    with admin.begin() as conn:  # the kit's scheduler below writes its backup job as `app`
        conn.execute(sa.text("GRANT ALL ON apscheduler_jobs TO app"))
    admin.dispose()
    quoted = urllib.parse.quote(PASSWORD, safe="")
    query = f"?sslmode=disable&password={quoted}&sslpassword={SSL_PASSPHRASE}"
    url = f"postgresql://app@127.0.0.1:{private_pg.port}/postgres{query}"
    forms = (*FORMS, SSL_PASSPHRASE, urllib.parse.quote(SSL_PASSPHRASE, safe=""))
    seen: dict[str, str] = {}

    seen["check"] = cli("check", "--detailed", "--db-url", url, env={})
    assert "Scheduler running with 3 tasks" in seen["check"], seen["check"]
    seen["wrong password"] = cli("check", "--db-url", url.replace("Sekr3t", "Wr0ng"), env={})
    assert "password came from the URL" in " ".join(seen["wrong password"].split())
    seen["history"] = cli("history", "--db-url", url, env={})  # no history table: an error
    assert "no table 'job_execution'" in " ".join(seen["history"].split())
    seen["backup run"] = cli(
        "backup", "run", "--db-url", url, "--backup-dir", str(tmp_path / "written"), env={}
    )
    assert "backup written:" in seen["backup run"], seen["backup run"]
    (tmp_path / "file").write_text("a file where the backup directory should be")
    seen["backup run, bad dir"] = cli(
        "backup", "run", "--db-url", url, "--backup-dir", str(tmp_path / "file" / "x"), env={}
    )
    assert "jobstore-exporter:" in seen["backup run, bad dir"]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--db-url", url, "--poll-interval", "0.3",
         "--listen-address", f"127.0.0.1:{port}", "--log-level", "debug"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while 'apscheduler_up{jobstore="default"} 1.0' not in fetch(f"{base}/metrics"):
            assert time.monotonic() < deadline, "exporter never came up"
            time.sleep(0.2)
        for path in ("/metrics", "/", "/api/status"):
            seen[path] = fetch(base + path)
        assert "sslpassword=***" in seen["/api/status"]
    finally:
        proc.terminate()
        seen["serve log"] = proc.communicate(timeout=15)[0]
    assert "reading postgresql+psycopg://app:***@" in seen["serve log"]

    # The kit: its own engine, its log lines, and the backup job's kwargs in the job store.
    caplog.set_level(logging.DEBUG)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=create_kit_engine(url))}, timezone="UTC"
    )
    scheduler.start(paused=True)
    try:
        register_backup_job(scheduler, database_url=url, backup_dir=tmp_path / "backups")
    finally:
        scheduler.shutdown(wait=False)
    engine = sa.create_engine(private_pg.url)
    with engine.connect() as conn:
        state = conn.execute(
            sa.text("SELECT job_state FROM apscheduler_jobs WHERE id = 'database_backup'")
        ).scalar_one()
    engine.dispose()
    assert PASSWORD.encode() not in bytes(state) and quoted.encode() not in bytes(state)
    seen["kit log"] = caplog.text
    assert "database backup of postgresql+psycopg://app:***@" in caplog.text

    found = {where: [f for f in forms if f in text] for where, text in seen.items()}
    assert not {k: v for k, v in found.items() if v}, f"a secret leaked: {found}"
