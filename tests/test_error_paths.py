"""Mistakes a new user makes, each answered by one line that names the fix.

Every test runs the real command (`python -m exporter ...`) against real stores written by a real
APScheduler: the app's own DATABASE_URL with another driver, a table under another name or
schema, a wrong password, list settings in the environment, a config file with several stores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from stores import write_jobs
from support import MARIADB_ADMIN_URL, Database, free_port, need_server, stop, wait_for

APP_DRIVERS = {
    "sqlite": ["sqlite+aiosqlite", "sqlite+pysqlite"],
    "postgresql": [
        "postgresql+asyncpg",
        "postgresql+psycopg2",
        "postgresql+pg8000",
        "postgresql+psycopg2cffi",
    ],
    "mariadb": ["mysql+mysqldb", "mysql+aiomysql", "mysql+asyncmy", "mariadb+mysqlconnector"],
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBSTORE_EXPORTER_")}
    base.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def flat(text: str) -> str:
    """Output with the terminal's line wrapping undone."""
    return " ".join(text.split())


def with_driver(url: str, driver: str) -> str:
    return sa.make_url(url).set(drivername=driver).render_as_string(hide_password=False)


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """`serve ARGS` on a free loopback port; yields its base URL and its log lines so far."""
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSTORE_EXPORTER_")}
    base_env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "serve", "--listen-address", f"127.0.0.1:{port}",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**base_env, **(env or {})},
    )  # fmt: skip
    lines: list[str] = []
    try:
        yield f"http://127.0.0.1:{port}", lines
    finally:
        stop(proc)
        lines.extend((proc.communicate()[0] or "").splitlines())


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())
    except OSError:
        return ""


# --- 1. the app's DATABASE_URL names another driver ------------------------------------------


def test_the_apps_own_driver_url_is_read_with_the_shipped_driver(any_db: Database) -> None:
    write_jobs(any_db.url)
    for driver in APP_DRIVERS[any_db.kind]:
        proc = run("check", env={"DATABASE_URL": with_driver(any_db.url, driver)})
        assert proc.returncode == 0, f"{driver}: {proc.stdout}{proc.stderr}"
        assert "Scheduler running with 3 tasks" in proc.stdout, driver


def test_serve_logs_once_which_driver_it_uses(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url)
    url = with_driver(sqlite_db.url, "sqlite+aiosqlite")
    with serve("--poll-interval", "0.2", env={"DATABASE_URL": url}) as (base, log):
        wait_for(lambda: 'apscheduler_up{jobstore="default"} 1.0' in fetch(f"{base}/metrics"))
        time.sleep(1)  # several polls
    notes = [line for line in log if "aiosqlite driver" in line]
    assert len(notes) == 1, log
    assert "sqlite3, the driver shipped with jobstore-exporter" in notes[0]


@pytest.mark.parametrize("command", ["check", "serve", "history"])
@pytest.mark.parametrize("url", ["postgressql://app@db/app", "mssql+pyodbc://app:pw@db/app"])
def test_an_unknown_scheme_is_one_line_listing_the_supported_ones(command: str, url: str) -> None:
    proc = run(command, "--db-url", url)
    assert proc.returncode == 2
    line = one_line(proc)
    assert line.startswith("jobstore-exporter: config error: db_url: unsupported database URL")
    assert "postgresql://, postgres://, mysql://, mariadb://, sqlite:///" in line
    assert "pw@" not in line


def test_an_unknown_driver_of_a_known_dialect_names_the_known_ones() -> None:
    proc = run("check", "--db-url", "postgresql+psycopg9://app@db/app")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "unknown driver 'psycopg9'" in line and "asyncpg" in line


# --- 2. the database answers, but the table is elsewhere ---------------------------------------


def test_a_table_under_another_name_is_reported_as_missing_not_unreachable(
    any_db: Database,
) -> None:
    write_jobs(any_db.url, tablename="my_jobs")
    proc = run("check", "--db-url", any_db.url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = flat(proc.stdout)
    assert "unreachable" not in line
    assert "Job store table missing: the database answered, but has no table " in line
    assert "'apscheduler_jobs' in schema" in line
    assert "set --jobs-table / --schema" in line
    assert "tables that look like APScheduler job tables: my_jobs" in line
    proc = run("check", "--db-url", any_db.url, "--jobs-table", "my_jobs")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_table_in_another_postgresql_schema_is_named_with_its_schema(pg_db: Database) -> None:
    engine = pg_db.engine()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA sched"))
    engine.dispose()
    write_jobs(pg_db.url, schema="sched")
    proc = run("check", "--json", "--db-url", pg_db.url)
    assert proc.returncode == 2
    (store,) = json.loads(proc.stdout)["jobstores"]
    assert store["message"].startswith("Job store table missing:")
    assert "no table 'apscheduler_jobs' in schema 'public'" in store["error"]
    assert "tables that look like APScheduler job tables: sched.apscheduler_jobs" in store["error"]
    assert run("check", "--db-url", pg_db.url, "--schema", "sched").returncode == 0


def test_a_database_without_any_job_table_says_so(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url, tablename="my_jobs")
    proc = run("check", "--db-url", sqlite_db.url, "--schema", "main", "--jobs-table", "nope")
    assert "no table 'nope' in schema 'main'" in flat(proc.stdout)
    assert "my_jobs" in proc.stdout
    empty = Path(sa.make_url(sqlite_db.url).database or "").with_name("empty.sqlite")
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    proc = run("check", "--db-url", f"sqlite:///{empty}")
    assert "no table in this database looks like an APScheduler job table" in flat(proc.stdout)


def test_serve_logs_a_missing_table_once_not_at_every_backoff_step(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url, tablename="my_jobs")
    env = {"JOBSTORE_EXPORTER_MAX_BACKOFF": "0.2"}
    with serve("--db-url", sqlite_db.url, "--poll-interval", "0.1", env=env) as (base, log):

        def errors() -> float:
            text = fetch(f"{base}/metrics")
            found = re.search(
                r'jobstore_exporter_poll_errors_total\{jobstore="default",source="jobs"\} (\S+)',
                text,
            )
            return float(found.group(1)) if found else 0.0

        wait_for(lambda: errors() >= 5, what="five failed polls")
        status = json.loads(fetch(f"{base}/api/status"))
    assert "my_jobs" in json.dumps(status)
    missing = [line for line in log if "has no table 'apscheduler_jobs'" in line]
    assert len(missing) == 1, log


# --- 3. wrong credentials ----------------------------------------------------------------------


@pytest.fixture
def mariadb_user(mariadb_db: Database) -> Iterator[tuple[str, str]]:
    """A MariaDB user with a password and read access to the test database: (url, password)."""
    name, password = f"jse_{uuid.uuid4().hex[:8]}", "R1ght-pass word"
    admin = sa.create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = sa.make_url(mariadb_db.url).database
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"))
            conn.execute(sa.text(f"GRANT SELECT ON {database}.* TO '{name}'@'%'"))
    except sa.exc.DBAPIError as exc:
        need_server(f"cannot create a MariaDB user: {exc}")
    url = sa.make_url(mariadb_db.url).set(username=name, password=None)
    try:
        yield url.render_as_string(hide_password=False), password
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP USER IF EXISTS '{name}'@'%'"))
        admin.dispose()


def test_a_wrong_password_names_user_host_and_the_setting_it_came_from(
    mariadb_db: Database, mariadb_user: tuple[str, str], tmp_path: Path
) -> None:
    write_jobs(mariadb_db.url)
    url, password = mariadb_user
    user = sa.make_url(url).username
    wrong = "Wr0ng-secret value"
    ok = run("check", "--db-url", url, env={"JOBSTORE_EXPORTER_DB_PASSWORD": password})
    assert ok.returncode == 0, ok.stdout + ok.stderr

    file = tmp_path / "password"
    file.write_text(wrong + "\n")
    in_url = sa.make_url(url).set(password=wrong).render_as_string(hide_password=False)
    cases = {
        "JOBSTORE_EXPORTER_DB_PASSWORD": run(
            "check", "--db-url", url, env={"JOBSTORE_EXPORTER_DB_PASSWORD": wrong}
        ),
        f"the password file {file}": run("check", "--db-url", url, "--db-password-file", str(file)),
        "the URL": run("check", "--db-url", in_url),
    }
    for source, proc in cases.items():
        assert proc.returncode == 2, source
        out = flat(proc.stdout)
        assert "Database login refused: the database refused the login of user" in out
        assert f"'{user}' at 127.0.0.1:3306 (access denied)" in out
        assert f"the password came from {source}" in out, out
        assert "1045" not in proc.stdout and wrong not in proc.stdout + proc.stderr
    proc = run("check", "--db-url", url)
    assert "no password was given" in flat(proc.stdout)


# --- 4. list settings from the environment -------------------------------------------------------


def test_list_settings_from_the_environment_take_plain_and_comma_separated_values(
    sqlite_db: Database,
) -> None:
    write_jobs(sqlite_db.url)
    for value, kept in [
        ("database_.*", {"database_backup"}),
        ("database_.*, cleanup_t{1,3}emp", {"database_backup", "cleanup_temp"}),
        ('["report_.*"]', {"report_gen"}),
    ]:
        env = {"JOBSTORE_EXPORTER_INCLUDE_JOBS": value}
        with serve("--db-url", sqlite_db.url, "--poll-interval", "0.2", env=env) as (base, _):

            def info() -> set[str]:
                text = fetch(f"{base}/metrics")
                return set(re.findall(r'apscheduler_job_info\{[^}]*job_id="([^"]+)"', text))

            assert wait_for(info, what=f"job series with {value}") == kept, value


def test_a_malformed_json_list_in_the_environment_is_one_line() -> None:
    proc = run(
        "check",
        "--db-url",
        "sqlite:////nonexistent/app.sqlite",
        env={"JOBSTORE_EXPORTER_EXCLUDE_JOBS": '["tmp_.*"'},
    )
    assert proc.returncode == 2
    line = one_line(proc)
    assert "JOBSTORE_EXPORTER_EXCLUDE_JOBS: not a valid JSON list" in line


# --- 5. check picks one store of a config file -------------------------------------------------


def three_stores(tmp_path: Path) -> Path:
    config = tmp_path / "multi.yaml"
    lines = ["jobstores:"]
    for name in ("main", "custom", "other"):
        url = f"sqlite:///{tmp_path / (name + '.sqlite')}"
        write_jobs(url, remove=("report_gen",) if name == "custom" else ())
        lines += [f"  - jobstore: {name}", f"    db_url: {url}"]
    config.write_text("\n".join(lines) + "\n")
    return config


def test_check_jobstore_picks_one_store_of_the_config(tmp_path: Path) -> None:
    config = three_stores(tmp_path)
    proc = run("check", "--json", "--config", str(config), "--jobstore", "custom")
    assert proc.returncode == 0, proc.stderr
    stores = json.loads(proc.stdout)["jobstores"]
    assert [(s["jobstore"], s["tasks"]["total"]) for s in stores] == [("custom", 2)]
    proc = run("check", "--json", "--config", str(config))
    assert [s["jobstore"] for s in json.loads(proc.stdout)["jobstores"]] == [
        "main",
        "custom",
        "other",
    ]


def test_check_rejects_an_unknown_store_and_flags_that_cannot_apply(tmp_path: Path) -> None:
    config = three_stores(tmp_path)
    proc = run("check", "--config", str(config), "--jobstore", "nope")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "no store named 'nope'" in line and "main, custom, other" in line
    for flag, value in [("--db-url", f"sqlite:///{tmp_path / 'x.sqlite'}"), ("--schema", "s")]:
        proc = run("check", "--config", str(config), "--jobstore", "custom", flag, value)
        assert proc.returncode == 2, flag
        assert f"{flag} cannot be combined with a config file that lists jobstores" in one_line(
            proc
        )


# --- 6. backup list asks only for the directory ------------------------------------------------


def test_backup_list_asks_only_for_the_backup_dir(tmp_path: Path) -> None:
    proc = run("backup", "list")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "backup_dir: not set; pass --backup-dir" in line
    assert "db_url" not in line and "DATABASE_URL" not in line

    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "app_20261125T020000Z.sqlite").write_bytes(b"")
    config = tmp_path / "exporter.yaml"
    config.write_text(f"backup_dir: {backups}\n")  # and no db_url anywhere
    proc = run("backup", "list", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "app_20261125T020000Z.sqlite" in proc.stdout


def test_backup_run_rejects_a_db_url_beside_a_config_listing_stores(tmp_path: Path) -> None:
    config = three_stores(tmp_path)
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    proc = run("backup", "run", "--config", str(config), "--jobstore", "custom",
               "--db-url", other, "--backup-dir", str(tmp_path / "b"))  # fmt: skip
    assert proc.returncode == 2
    assert "--db-url cannot be combined with a config file that lists jobstores" in one_line(proc)
    assert not (tmp_path / "b").exists()
