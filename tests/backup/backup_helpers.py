"""Helpers for the backup tests: a busy scheduler, restores per backend, the real metrics pipeline,
and tiny or read-only file systems for the failure modes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import support
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import generate_latest
from support import IN_CI, MARIADB_ADMIN_URL, PG_ADMIN_URL, Database

from exporter.kit import instrument, register_backup_job
from exporter.kit.engine import create_kit_engine
from exporter.shared.tables import history_table
from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector, build_registry
from exporter.sidecar.poller import StorePoller

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "") -> T:
    return support.wait_for(condition, timeout, what)


def need_privilege(reason: str) -> None:
    """Skip (locally) or fail (in CI) a test that needs root-only file system tricks."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this failure mode must be tested)", pytrace=False)
    pytest.skip(reason)


# --- file systems ------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "64k", read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (optionally read-only); skips/fails when impossible.

    Without root, a read-only directory is a plain directory with mode 0500 instead (root
    ignores that mode, which is why root gets a read-only mount).
    """
    path.mkdir(parents=True, exist_ok=True)
    if read_only and os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)
        return
    mount = shutil.which("mount")
    result = (
        subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if mount and os.geteuid() == 0
        else None
    )
    if result is None or result.returncode != 0:
        detail = result.stderr.strip() if result is not None else "not root"
        need_privilege(f"cannot mount a tmpfs for this failure mode: {detail}")
    try:
        if read_only:
            subprocess.run(
                ["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True
            )
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --- a scheduler that keeps writing ------------------------------------------------------------


PAIRS = sa.MetaData()
PAIR_A = sa.Table("pair_a", PAIRS, sa.Column("id", sa.Integer, primary_key=True))
PAIR_B = sa.Table("pair_b", PAIRS, sa.Column("id", sa.Integer, primary_key=True))


@dataclass
class Busy:
    scheduler: BackgroundScheduler
    engine: sa.Engine
    ticks: int = 0
    pairs: int = 0


@contextlib.contextmanager
def busy_database(db: Database) -> Iterator[Busy]:
    """A real BackgroundScheduler rewriting its job row every 0.05 s, plus a thread committing
    one row into each of `pair_a` and `pair_b` per transaction (so a consistent copy always holds
    as many rows in one as in the other)."""
    engine = create_kit_engine(db.url, sqlite_wal=True)
    PAIRS.create_all(engine)
    store = SQLAlchemyJobStore(engine=engine)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    busy = Busy(scheduler, engine)

    def count(event: Any) -> None:
        busy.ticks += 1

    scheduler.add_listener(count, EVENT_JOB_EXECUTED)
    scheduler.add_job("sample_jobs:noop", IntervalTrigger(seconds=0.05), id="tick")
    scheduler.add_job("sample_jobs:noop", IntervalTrigger(hours=6), id="cleanup_temp")
    stop = threading.Event()

    def insert_pairs() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with contextlib.suppress(sa.exc.OperationalError), engine.begin() as conn:
                conn.execute(PAIR_A.insert().values(id=n))
                conn.execute(PAIR_B.insert().values(id=n))
                busy.pairs = n
            time.sleep(0.002)

    scheduler.start()
    inserter = threading.Thread(target=insert_pairs, daemon=True)
    inserter.start()
    try:
        wait_for(lambda: busy.ticks >= 3 and busy.pairs >= 20, what="the scheduler to write")
        yield busy
    finally:
        stop.set()
        inserter.join(5)
        scheduler.shutdown(wait=True)
        engine.dispose()


# --- restores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    job_ids: set[str]
    job_states_ok: bool
    pair_a: int
    pair_b: int


def read_restored(url: str) -> Restored:
    """The job rows (SQLAlchemy Core; never SQLAlchemyJobStore.get_all_jobs) and pair counts."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            jobs = sa.Table("apscheduler_jobs", sa.MetaData(), autoload_with=conn)
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.next_run_time, jobs.c.job_state))
            rows = list(rows)
            a = conn.execute(sa.select(sa.func.count()).select_from(PAIR_A)).scalar_one()
            b = conn.execute(sa.select(sa.func.count()).select_from(PAIR_B)).scalar_one()
    finally:
        engine.dispose()
    states_ok = all(bytes(r.job_state)[:2] == b"\x80\x05" for r in rows)
    return Restored({r.id for r in rows}, states_ok, a, b)


@contextlib.contextmanager
def restore(kind: str, backup: Path, workdir: Path) -> Iterator[str]:
    """Restore `backup` into a fresh database as docs/backup.md says; yield the database's URL."""
    if kind == "sqlite":
        target = workdir / f"restored-{uuid.uuid4().hex[:6]}.sqlite"
        shutil.copyfile(backup, target)
        yield f"sqlite:///{target}"
        return
    name = f"jse_restore_{uuid.uuid4().hex[:10]}"
    admin_url = PG_ADMIN_URL if kind == "postgresql" else MARIADB_ADMIN_URL
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(admin_url).set(database=name)
    try:
        if kind == "postgresql":
            subprocess.run(
                ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={name}", str(backup)],
                env={**os.environ, "PGHOST": url.host or "", "PGPORT": str(url.port or 5432),
                     "PGUSER": url.username or ""},
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        else:
            with backup.open("rb") as dump:
                subprocess.run(
                    ["mariadb", "--protocol=TCP", f"--host={url.host}",
                     f"--port={url.port or 3306}", f"--user={url.username}", name],
                    stdin=dump, check=True, capture_output=True, timeout=60,
                )  # fmt: skip
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            extra = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{extra}"))
        admin.dispose()


# --- the real pipeline: scheduler + recorder -> history -> poller -> /metrics --------------------


@dataclass
class PipelineRun:
    rows: list[dict[str, Any]]
    metrics: str
    events: list[int]

    def sample(self, name: str) -> float | None:
        prefix = f'{name}{{jobstore="default"}} '
        for line in self.metrics.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
        return None


def backup_rows(url: str) -> list[dict[str, Any]]:
    table = history_table(sa.MetaData())
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("job_execution"):
                return []
            query = sa.select(table).where(table.c.job_id == "database_backup").order_by(table.c.id)
            return [dict(r._mapping) for r in conn.execute(query)]
    finally:
        engine.dispose()


def run_backup_job(
    db: Database,
    backup_dir: Path,
    *,
    database_url: str | None = None,
    triggers: int = 1,
    expect_rows: int = 1,
    **register: Any,
) -> PipelineRun:
    """Run the registered `database_backup` job in a real instrumented scheduler `triggers` times
    (back to back), then read the store with the sidecar's poller and render /metrics."""
    store = SQLAlchemyJobStore(url=db.url)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    events: list[int] = []
    scheduler.add_listener(
        lambda e: events.append(e.code) if e.job_id == "database_backup" else None,
        EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES,
    )
    instrument(scheduler, db.url, heartbeat_interval=None)
    register_backup_job(
        scheduler, database_url=database_url or db.url, backup_dir=backup_dir, **register
    )
    scheduler.start()
    try:
        # The recorder creates its tables on its own thread; a dump that races that DDL fails
        # ("table definition has changed"), which is not what these tests are about.
        inspector_engine = sa.create_engine(db.url)
        wait_for(
            lambda: all(
                sa.inspect(inspector_engine).has_table(name)
                for name in ("job_execution", "scheduler_heartbeat")
            ),
            what="the recorder's tables",
        )
        inspector_engine.dispose()
        for n in range(triggers):
            scheduler.modify_job("database_backup", next_run_time=datetime.now(UTC))
            if n + 1 < triggers:
                wait_for(
                    lambda: any(r["status"] == "running" for r in backup_rows(db.url)),
                    what="the first backup run to start",
                )
        wait_for(
            lambda: sum(r["status"] != "running" for r in backup_rows(db.url)) >= expect_rows,
            what="the backup run's history row",
        )
    finally:
        scheduler.shutdown(wait=True)
        store.engine.dispose()
    rows = backup_rows(db.url)
    config = load_config(db_url=db.url, backup_dir=backup_dir)
    poller = StorePoller(config.stores[0])
    try:
        poller.poll()
        collector = SnapshotCollector(lambda: [poller.snapshot])
        text = generate_latest(build_registry(collector)).decode()
    finally:
        poller.close()
    return PipelineRun(rows, text, events)


def ours(directory: Path) -> list[str]:
    """Every entry of a backup directory except the lock files and the manifests."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if not p.name.endswith((".backup-lock", ".backups.json"))
    )


def fill_database(db: Database, megabytes: float = 0.3) -> None:
    """Rows of random bytes (incompressible) so a backup needs more than a tiny tmpfs holds."""
    engine = sa.create_engine(db.url)
    blobs = sa.Table(
        "blobs", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary(length=65535)),
    )  # fmt: skip
    blobs.create(engine)
    chunk = 16_000
    with engine.begin() as conn:
        conn.execute(
            blobs.insert(),
            [{"data": os.urandom(chunk)} for _ in range(int(megabytes * 1e6 / chunk))],
        )
    engine.dispose()
