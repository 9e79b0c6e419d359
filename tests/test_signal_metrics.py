"""The two series that alert rules and dashboard panels join on: the backup job's id
(``apscheduler_backup_info``) and poll-time overdue jobs (``apscheduler_job_overdue_seconds``).

Stores are written by a real APScheduler; the exporter's real poller reads them and the real
collector renders them.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import generate_latest
from stores import write_jobs
from support import Database

from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector, build_registry
from exporter.sidecar.poller import StorePoller


def render(url: str, **flags: object) -> str:
    config = load_config(db_url=url, **flags)
    poller = StorePoller(config.stores[0])
    try:
        poller.poll()
        collector = SnapshotCollector(
            lambda: [poller.snapshot],
            backup_job_ids={s.name: s.backup_job_id for s in config.stores},
        )
        return generate_latest(build_registry(collector)).decode()
    finally:
        poller.close()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted (label, value) pairs: value} of every sample of ``name``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            pairs = re.findall(r'(\w+)="([^"]*)"', labels)
            found[tuple(sorted(pairs))] = float(value)
    return found


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_backup_info_names_the_configured_backup_job(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url)
    default = render(sqlite_db.url)
    assert samples(default, "apscheduler_backup_info") == {
        key(jobstore="default", job_id="database_backup"): 1.0
    }
    custom = render(sqlite_db.url, backup_job_id="nightly_dump", jobstore="billing")
    assert samples(custom, "apscheduler_backup_info") == {
        key(jobstore="billing", job_id="nightly_dump"): 1.0
    }


def test_overdue_seconds_only_for_jobs_overdue_at_the_poll(sqlite_db: Database) -> None:
    """A stalled scheduler leaves next_run_time in the past: those jobs are listed with how far
    past due they were when polled; a job within its grace, a future one and a paused one are
    not."""
    soon = datetime.now(UTC) + timedelta(hours=1)
    common = {"func": "sample_jobs:noop", "trigger": IntervalTrigger(hours=1, timezone="UTC")}
    write_jobs(
        sqlite_db.url,
        [
            {**common, "id": "stalled", "next_run_time": soon},
            {**common, "id": "graceful", "next_run_time": soon, "misfire_grace_time": 120},
            {**common, "id": "future", "next_run_time": soon},
            {**common, "id": "paused", "next_run_time": soon},
        ],
        pause=("paused",),
    )
    # What a scheduler that stopped processing leaves behind: fire times that passed, rows
    # never advanced.
    now = datetime.now(UTC)
    engine = sqlite_db.engine()
    with engine.begin() as db:
        for job_id, ago in (("stalled", 600), ("graceful", 30)):
            db.execute(
                sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = :id"),
                {"t": now.timestamp() - ago, "id": job_id},
            )
    engine.dispose()
    before = time.time()
    text = render(sqlite_db.url)
    after = time.time()
    overdue = samples(text, "apscheduler_job_overdue_seconds")
    assert set(overdue) == {key(jobstore="default", job_id="stalled")}
    (value,) = overdue.values()
    assert before - now.timestamp() + 600 - 1 <= value <= after - now.timestamp() + 600 + 1
    assert samples(text, "apscheduler_jobs_overdue") == {key(jobstore="default"): 1.0}


def test_source_up_says_which_source_failed_at_the_last_poll(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """A backup_dir that is not mounted fails its source at every poll while the job store reads
    fine: the rules tell the two apart by ``jobstore_exporter_source_up``."""
    write_jobs(sqlite_db.url)
    text = render(sqlite_db.url, backup_dir=tmp_path / "not-mounted")
    up = samples(text, "jobstore_exporter_source_up")
    assert up[key(jobstore="default", source="jobs")] == 1.0
    assert up[key(jobstore="default", source="backups")] == 0.0
    assert up[key(jobstore="default", source="history")] == 0.0  # no job_execution table yet
    (tmp_path / "mounted").mkdir()
    text = render(sqlite_db.url, backup_dir=tmp_path / "mounted")
    assert (
        samples(text, "jobstore_exporter_source_up")[key(jobstore="default", source="backups")]
        == 1.0
    )
