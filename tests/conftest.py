"""Shared fixtures: real databases for every test that needs one.

Each test gets its own database (a fresh SQLite file, or a freshly created PostgreSQL / MariaDB
database on the servers of the machine), so tests never see each other's rows. A server that is
not reachable skips the test with the reason, except under ``CI=true`` where it fails: CI must
never go green having silently tested nothing. Plain helpers live in ``support.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from support import (
    MARIADB_ADMIN_URL,
    PG_ADMIN_URL,
    Database,
    PrivatePostgres,
    _as_postgres,
    _postgres_bindir,
    free_port,
    need_server,
)

from exporter.kit import scheduler as kit_scheduler


def _server_database(kind: str, admin_url: str) -> Iterator[Database]:
    name = f"jse_{uuid.uuid4().hex[:12]}"
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001 - any failure means "server not usable here"
        need_server(f"{kind} server not reachable at {admin_url}: {str(exc).splitlines()[0]}")
    url = sa.make_url(admin_url).set(database=name)
    try:
        yield Database(kind, url.render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    return Database("sqlite", f"sqlite:///{tmp_path / 'app.sqlite'}")


@pytest.fixture
def pg_db() -> Iterator[Database]:
    yield from _server_database("postgresql", PG_ADMIN_URL)


@pytest.fixture
def mariadb_db() -> Iterator[Database]:
    yield from _server_database("mariadb", MARIADB_ADMIN_URL)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_db(request: pytest.FixtureRequest) -> Database:
    """The same test on SQLite, PostgreSQL and MariaDB."""
    fixture = {"sqlite": "sqlite_db", "postgresql": "pg_db", "mariadb": "mariadb_db"}
    return request.getfixturevalue(fixture[request.param])


# --- A private PostgreSQL cluster, for tests that stop and restart the database ---------------


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    bindir = _postgres_bindir()
    if bindir is None:
        need_server("PostgreSQL server binaries (initdb, pg_ctl) not installed")
        raise AssertionError  # unreachable: need_server skips or fails
    base = Path(tempfile.mkdtemp(prefix="jse-pg-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    cluster = PrivatePostgres(base / "data", free_port(), base, bindir)
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(cluster.data_dir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster.start()
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        need_server(f"cannot start a private PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


# --- Test isolation for the scheduler-side kit ------------------------------------------------


@pytest.fixture(autouse=True)
def close_leftover_recorders(request: pytest.FixtureRequest) -> Iterator[None]:
    before = set(kit_scheduler._recorders.values())
    yield
    leftovers = [r for r in list(kit_scheduler._recorders.values()) if r not in before]
    for recorder in leftovers:
        scheduler = recorder.scheduler
        if scheduler.running and not isinstance(scheduler, AsyncIOScheduler):
            warnings.warn(f"{request.node.name} left its scheduler running", stacklevel=1)
            scheduler.shutdown(wait=False)
        recorder.close(timeout=1.0)


# --- Tiers ------------------------------------------------------------------------------------
# Every test gets exactly one tier marker, so `make test-fast` can run the inner loop and CI
# still runs everything. A module may set its own tier with `pytestmark`; otherwise the tier is
# derived from what the test needs, so a new test lands in the right tier without ceremony.

TIERS = ("unit", "database", "e2e", "artefact")
# Whole modules that run real processes end to end (exporter, scheduler, Prometheus, browser).
E2E_MODULES = {
    "test_e2e",
    "test_prometheus_e2e",
    "test_history_e2e",
    "test_demo",
    "test_outage",
    "test_reload",
    "test_faults",
}
# Checks of shipped files: alert rules, dashboard, deployment manifests.
ARTEFACT_MODULES = {"test_alert_rules", "test_dashboard", "test_deploy"}
DATABASE_FIXTURES = {"sqlite_db", "pg_db", "mariadb_db", "any_db", "private_pg"}


def pytest_configure(config: pytest.Config) -> None:
    for tier, what in zip(
        TIERS,
        (
            "pure logic, no database file or server",
            "real SQLite files or database servers",
            "real processes end to end (exporter, scheduler, Prometheus, browser)",
            "checks of shipped files (rules, dashboard, manifests)",
        ),
        strict=True,
    ):
        config.addinivalue_line("markers", f"{tier}: {what}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in E2E_MODULES:
            tier = "e2e"
        elif module in ARTEFACT_MODULES:
            tier = "artefact"
        elif DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            tier = "database"
        else:
            tier = "unit"
        item.add_marker(tier)
