"""The app of the compose stacks: the seed's scheduler, on the database of ``DATABASE_URL``.

It does what an Aegis-style app's scheduler container does. ``exporter.create_scheduler``
persists the jobs in the database, records every run in ``job_execution`` and writes heartbeats
to ``scheduler_heartbeat``; every start re-registers the jobs from code with
``replace_existing=True``. The jobs are those of ``jobstore-exporter demo``, defined once in
``exporter.cli.demo_jobs``: ``cleanup_temp`` every 6 hours, ``report_gen`` weekly on Monday at
09:00 UTC and ``sync_inventory`` every 20 s, failing about one run in five, beside the kit's
``database_backup`` (SQLite's backup API, or ``pg_dump`` for PostgreSQL), here daily at
02:00 UTC unless ``--backup-every`` asks for an interval; the log states the schedule in force.
Unlike the demo, it runs on any database the kit backs up, as a process of its own, with
settings that make things fail.

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
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from exporter import create_scheduler
from exporter.cli.demo_jobs import add_demo_jobs, backup_setting
from exporter.kit.engine import normalize_url

log = logging.getLogger("demo_scheduler")


def build_scheduler(
    engine: sa.Engine,
    *,
    backup_dir: Path,
    backup_every: float,
    failure_rate: float,
    work_dir: Path,
    password_file: str | None = None,
) -> AsyncIOScheduler:
    """The seed's jobs on ``engine``, re-registered from code as at every start of the app.

    The backup is the kit's (``create_scheduler(backup=...)``): a verified copy named
    ``<db>_<UTC stamp>.<ext>``, rotated, daily at 02:00 UTC; ``backup_every`` seconds > 0 makes
    it an interval job instead (registered as such, so its log line says so).
    """
    backup: dict[str, Any] = backup_setting(backup_dir, backup_every if backup_every > 0 else None)
    if password_file:
        backup["password_file"] = password_file  # read at each run, never stored in the job
    scheduler = create_scheduler(engine, timezone="UTC", backup=backup)
    add_demo_jobs(scheduler, work_dir, failure_rate)
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
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    scheduler = build_scheduler(
        database_engine(args.database_url, args.database_password_file),
        backup_dir=args.backup_dir,
        backup_every=args.backup_every,
        failure_rate=args.failure_rate,
        work_dir=args.work_dir,
        password_file=args.database_password_file,
    )
    asyncio.run(run(scheduler))


if __name__ == "__main__":
    main()
