"""The app of the compose stacks: the seed's scheduler, on the database of ``DATABASE_URL``.

It does what an Aegis-style app's scheduler container does. ``exporter.create_scheduler``
persists the jobs in the database, records every run in ``job_execution`` and writes heartbeats
to ``scheduler_heartbeat``; every start re-registers the jobs from code with
``replace_existing=True``. The jobs are those of ``jobstore-exporter demo`` (``exporter.demo``):
``database_backup`` daily at 02:00 UTC, ``cleanup_temp`` every 6 hours, ``report_gen`` weekly on
Monday at 09:00 UTC and ``sync_inventory`` every 20 s, failing about one run in five. Unlike the
demo's backup, the one here also backs up PostgreSQL (with ``pg_dump``).

Run it beside ``jobstore-exporter serve`` (see docs/getting-started.md)::

    python deploy/demo_scheduler.py --database-url sqlite:///$PWD/app/app.sqlite \\
        --backup-dir app/backups --backup-every 60

Each flag can also come from the environment variable in brackets:

    --database-url [DATABASE_URL]                  the scheduler's database (SQLAlchemy URL)
    --database-password-file [DATABASE_PASSWORD_FILE]
                                                   file holding its password (a secret)
    --backup-dir [BACKUP_DIR]                      where backups go (default ./backups)
    --backup-every [BACKUP_EVERY]                  seconds between backups, instead of daily
                                                   at 02:00 UTC (0: daily)
    --failure-rate [FAILURE_RATE]                  share of sync_inventory runs that fail (0.2)
    --work-dir [WORK_DIR]                          temp files and reports of the other jobs

A backup directory that cannot be created or written (``--backup-dir /dev/null/backups``) makes
every backup fail, which is how the getting-started guide fires ``APSchedulerBackupFailed``.
SIGTERM and SIGINT stop the scheduler cleanly: the last history rows and a ``stopped`` heartbeat
are written before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter import create_scheduler
from exporter.demo import cleanup_temp, database_backup, report_gen, sync_inventory
from exporter.kit.writer import normalize_url

log = logging.getLogger("demo_scheduler")

# The database the backup job copies. Set by main(); a job's arguments are pickled into the job
# store, so the engine (and the password in its URL) must not be one of them.
_engine: sa.Engine | None = None


def backup_database(backup_dir: str, keep: int = 7) -> str:
    """Back up the scheduler's database into ``backup_dir``, keeping the newest ``keep`` files.

    SQLite is copied with its online backup API (``exporter.demo.database_backup``), PostgreSQL
    with ``pg_dump --format=custom`` into ``<database>_<UTC stamp>.dump``, written under a
    temporary name first so that a failed dump never looks like a backup.
    """
    engine = _engine
    if engine is None:
        raise RuntimeError("no database configured for the backup")
    url = engine.url
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        return database_backup(url.database, backup_dir, keep)
    if url.get_backend_name() != "postgresql":
        raise RuntimeError(f"the demo backs up SQLite and PostgreSQL, not {url.get_backend_name()}")
    target_dir = Path(backup_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = target_dir / f"{url.database}_{stamp}.dump"
    partial = target_dir / f".{target.name}.partial"
    command = ["pg_dump", "--format=custom", "--no-password", f"--file={partial}"]
    command += [f"--host={url.host}"] if url.host else []
    command += [f"--port={url.port}"] if url.port else []
    command += [f"--username={url.username}"] if url.username else []
    # The password goes through the environment, never the command line.
    env = {**os.environ, "PGPASSWORD": url.password} if url.password else None
    try:
        subprocess.run(
            [*command, str(url.database)], env=env, check=True, capture_output=True, text=True
        )
        partial.replace(target)
    except FileNotFoundError:
        raise RuntimeError("pg_dump not found: install postgresql-client") from None
    except subprocess.CalledProcessError as exc:
        lines = exc.stderr.strip().splitlines() or [f"exit code {exc.returncode}"]
        raise RuntimeError(f"pg_dump failed: {lines[-1]}") from None
    finally:
        partial.unlink(missing_ok=True)
    for old in sorted(target_dir.glob(f"{url.database}_*.dump"))[:-keep]:
        old.unlink()
    return str(target)


def build_scheduler(
    engine: sa.Engine,
    *,
    backup_dir: Path,
    backup_every: float,
    failure_rate: float,
    work_dir: Path,
) -> AsyncIOScheduler:
    """The seed's jobs on ``engine``, re-registered from code as at every start of the app."""
    scheduler = create_scheduler(engine, timezone="UTC")
    if backup_every > 0:
        backup_trigger: BaseTrigger = IntervalTrigger(seconds=backup_every, timezone="UTC")
        backup_name = "Database Backup"
    else:
        backup_trigger = CronTrigger(hour=2, minute=0, timezone="UTC")
        backup_name = "Daily Database Backup"
    scheduler.add_job(
        backup_database,
        trigger=backup_trigger,
        kwargs={"backup_dir": str(backup_dir)},
        id="database_backup",
        name=backup_name,
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
    scheduler.add_job(
        cleanup_temp,
        trigger=IntervalTrigger(hours=6, timezone="UTC"),
        kwargs={"temp_dir": str(work_dir / "tmp")},
        id="cleanup_temp",
        name="Clean Temporary Files",
        replace_existing=True,
    )
    scheduler.add_job(
        report_gen,
        trigger=CronTrigger(day_of_week="mon", hour=9, minute=0, timezone="UTC"),
        kwargs={"report_dir": str(work_dir / "reports")},
        id="report_gen",
        name="Weekly Report",
        replace_existing=True,
    )
    scheduler.add_job(
        sync_inventory,
        trigger=IntervalTrigger(seconds=20, timezone="UTC"),
        kwargs={"failure_rate": failure_rate},
        id="sync_inventory",
        name="Sync Inventory",
        max_instances=1,
        replace_existing=True,
    )
    return scheduler


def database_engine(url: str, password_file: str | None) -> sa.Engine:
    """An engine for ``url``, with the password read from ``password_file`` when given."""
    parsed = normalize_url(url)
    if password_file:
        password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        parsed = parsed.set(password=password)
    if parsed.get_backend_name() == "sqlite":
        return sa.create_engine(parsed)
    return sa.create_engine(parsed, pool_pre_ping=True)


async def run(scheduler: AsyncIOScheduler) -> None:
    """Run ``scheduler`` until SIGTERM or SIGINT, then shut it down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    scheduler.start()
    log.info("demo scheduler running with jobs: %s", ", ".join(j.id for j in scheduler.get_jobs()))
    try:
        await stop.wait()
    finally:
        log.info("stopping the demo scheduler")
        scheduler.shutdown()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=env("DATABASE_URL"))
    parser.add_argument("--database-password-file", default=env("DATABASE_PASSWORD_FILE"))
    parser.add_argument("--backup-dir", type=Path, default=Path(env("BACKUP_DIR", "backups")))
    parser.add_argument("--backup-every", type=float, default=float(env("BACKUP_EVERY", "0")))
    parser.add_argument("--failure-rate", type=float, default=float(env("FAILURE_RATE", "0.2")))
    default_work = Path(tempfile.gettempdir()) / "demo-scheduler"
    parser.add_argument("--work-dir", type=Path, default=Path(env("WORK_DIR", default_work)))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set --database-url or DATABASE_URL (the scheduler's database)")
    if not 0 <= args.failure_rate <= 1:
        parser.error("--failure-rate must be between 0 and 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    global _engine
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    _engine = database_engine(args.database_url, args.database_password_file)
    scheduler = build_scheduler(
        _engine,
        backup_dir=args.backup_dir,
        backup_every=args.backup_every,
        failure_rate=args.failure_rate,
        work_dir=args.work_dir,
    )
    asyncio.run(run(scheduler))


if __name__ == "__main__":
    main()
