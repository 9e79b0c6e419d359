"""Write real job stores with a real APScheduler, as an app would."""

from __future__ import annotations

from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

# The seed's three jobs (database_backup daily 02:00 UTC, cleanup_temp every 6 h, report_gen
# weekly on Monday), as Aegis registers them.
SEED_JOBS: list[dict[str, Any]] = [
    {
        "func": "sample_jobs:noop",
        "trigger": CronTrigger(hour=2, minute=0, timezone="UTC"),
        "id": "database_backup",
        "name": "Daily Database Backup",
        "max_instances": 1,
        "coalesce": True,
    },
    {
        "func": "sample_jobs:noop",
        "trigger": IntervalTrigger(hours=6, timezone="UTC"),
        "id": "cleanup_temp",
        "name": "Clean Temporary Files",
    },
    {
        "func": "sample_jobs:noop",
        "trigger": CronTrigger(day_of_week="mon", hour=9, minute=0, timezone="UTC"),
        "id": "report_gen",
        "name": "Weekly Report",
    },
]


def write_jobs(
    url: str,
    jobs: list[dict[str, Any]] | None = None,
    *,
    tablename: str = "apscheduler_jobs",
    schema: str | None = None,
    pause: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
) -> dict[str, float | None]:
    """Add (replace) jobs through a real scheduler; return each job's next_run_time as seen by
    APScheduler itself (Unix seconds, None when paused)."""
    store = SQLAlchemyJobStore(url=url, tablename=tablename, tableschema=schema)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    scheduler.start(paused=True)
    try:
        for spec in jobs if jobs is not None else SEED_JOBS:
            scheduler.add_job(replace_existing=True, **spec)
        for job_id in pause:
            scheduler.pause_job(job_id)
        for job_id in remove:
            scheduler.remove_job(job_id)
        return {
            job.id: job.next_run_time.timestamp() if job.next_run_time else None
            for job in scheduler.get_jobs()
        }
    finally:
        scheduler.shutdown(wait=False)
        store.engine.dispose()
