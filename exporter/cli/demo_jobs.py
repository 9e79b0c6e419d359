"""The demo's jobs, defined once for `jobstore-exporter demo` and `deploy/demo_scheduler.py`.

Both run the seed's jobs as an Aegis-style app registers them at every start
(``replace_existing=True``): ``cleanup_temp`` every 6 hours, ``report_gen`` weekly on Monday at
09:00 UTC and ``sync_inventory`` every 20 s, failing about one run in five so there are failures
to see, beside the kit's verified ``database_backup``. The jobs do small real work in a work
directory. Scheduler-side only: nothing here imports the sidecar.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.kit.backup import JOB_ID as BACKUP_JOB_ID

# The demo's backup cadence: often enough that a newcomer sees backup metrics in the first
# minute and fresh ones while they look around, rare enough to keep the directory small.
DEMO_BACKUP_EVERY = 300.0
DEMO_JOB_IDS = ("cleanup_temp", "report_gen", "sync_inventory")


def cleanup_temp(temp_dir: str, max_age_seconds: float = 6 * 3600) -> int:
    """Delete files older than ``max_age_seconds`` from the demo's temp directory."""
    removed = 0
    cutoff = time.time() - max_age_seconds
    for path in Path(temp_dir).glob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()
            removed += 1
    return removed


def report_gen(report_dir: str) -> str:
    """Write a tiny weekly report file."""
    target = Path(report_dir)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"report_{datetime.now(UTC):%Y%m%d}.txt"
    path.write_text(f"weekly report generated at {datetime.now(UTC).isoformat()}\n")
    return str(path)


def sync_inventory(failure_rate: float = 0.2) -> int:
    """A fast job that sometimes fails, so the demo has failures to show."""
    time.sleep(random.uniform(0.05, 0.4))
    if random.random() < failure_rate:
        raise ConnectionError("inventory service timed out (demo failure)")
    return random.randint(1, 100)


def backup_setting(backup_dir: Path, every: float | None) -> dict[str, object]:
    """``create_scheduler(backup=...)`` for the demo: the kit's job, on an interval if asked."""
    setting: dict[str, object] = {"backup_dir": str(backup_dir)}
    if every:
        setting.update(every=every, name="Database Backup")
    return setting


def add_demo_jobs(scheduler: BaseScheduler, work_dir: Path, failure_rate: float = 0.2) -> None:
    """Register the three demo jobs (by reference, so job rows never pickle code)."""
    scheduler.add_job(
        "exporter.cli.demo_jobs:cleanup_temp",
        trigger=IntervalTrigger(hours=6, timezone="UTC"),
        kwargs={"temp_dir": str(work_dir / "tmp")},
        id="cleanup_temp",
        name="Clean Temporary Files",
        replace_existing=True,
    )
    scheduler.add_job(
        "exporter.cli.demo_jobs:report_gen",
        trigger=CronTrigger(day_of_week="mon", hour=9, minute=0, timezone="UTC"),
        kwargs={"report_dir": str(work_dir / "reports")},
        id="report_gen",
        name="Weekly Report",
        replace_existing=True,
    )
    scheduler.add_job(
        "exporter.cli.demo_jobs:sync_inventory",
        trigger=IntervalTrigger(seconds=20, timezone="UTC"),
        kwargs={"failure_rate": failure_rate},
        id="sync_inventory",
        name="Sync Inventory",
        max_instances=1,
        replace_existing=True,
    )


def back_up_at_start(scheduler: BaseScheduler) -> None:
    """Make the backup job's first run happen as soon as the scheduler starts, so a fresh
    demo shows a verified backup (and its metrics) within its first poll or two."""
    scheduler.modify_job(BACKUP_JOB_ID, next_run_time=datetime.now(UTC))
