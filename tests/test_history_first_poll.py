"""Runs that finish before the exporter's first read of the history table are counted.

The exporter is often started before the app (a fresh deployment): the kit creates
`job_execution` when the scheduler starts, and the first read comes up to a poll later. Every
run that finished after the exporter started must be in `apscheduler_job_runs_total`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client.parser import text_string_to_metric_families
from support import Database, free_port, stop, wait_for

from exporter.kit import instrument
from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.poller import StorePoller


def table_counts(db: Database, above_id: int = 0) -> Counter[tuple[str, str]]:
    engine = db.engine()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT job_id, status, COUNT(*) FROM job_execution "
                "WHERE status <> 'running' AND id > :above GROUP BY job_id, status"
            ),
            {"above": above_id},
        ).all()
    engine.dispose()
    return Counter({(job_id, status): int(n) for job_id, status, n in rows})


def served_counts(text: str) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "apscheduler_job_runs_total" and sample.value:
                counts[(sample.labels["job_id"], sample.labels["status"])] = int(sample.value)
    return counts


def scrape(base: str) -> str:
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""


def fast_scheduler(db: Database) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=db.url)}, timezone="UTC"
    )
    instrument(scheduler, db.url, heartbeat_interval=0.5)
    return scheduler


def add_fast_jobs(scheduler: BackgroundScheduler) -> None:
    scheduler.add_job("sample_jobs:noop", IntervalTrigger(seconds=0.05), id="quick")
    scheduler.add_job("sample_jobs:fail", IntervalTrigger(seconds=0.1), id="broken")


def test_exporter_started_first_counts_every_run(any_db: Database) -> None:
    """A fresh database, the exporter process first (polling every second), then a real
    scheduler with instrument() running fast jobs: the served counts equal the table's rows.
    Before, the runs that finished before the first history read (about a poll's worth) were
    never counted."""
    port = free_port()
    command = [
        sys.executable, "-m", "exporter", "serve", "--listen-address", f"127.0.0.1:{port}",
        "--db-url", any_db.url, "--poll-interval", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )
    base = f"http://127.0.0.1:{port}"
    scheduler: BackgroundScheduler | None = None
    try:
        wait_for(lambda: scrape(base) or proc.poll() is not None, 30, "the exporter to serve")
        assert proc.poll() is None
        time.sleep(1.5)  # it has polled the empty database (no tables yet) at least once
        scheduler = fast_scheduler(any_db)  # the kit creates its tables from here on
        add_fast_jobs(scheduler)
        scheduler.start()
        time.sleep(3)
        scheduler.shutdown(wait=True)  # flushes the recorder
        expected = table_counts(any_db)
        assert expected[("quick", "success")] >= 20 and expected[("broken", "failed")] >= 10
        served: Counter[tuple[str, str]] = Counter()

        def caught_up() -> bool:
            # The table is read again each time: were the shutdown's flush of the history
            # writer cut short (its timeout, on a loaded machine), rows written after it would
            # be served but missing from a table read once.
            nonlocal served, expected
            served = served_counts(scrape(base))
            expected = table_counts(any_db)
            return served == expected

        with contextlib.suppress(AssertionError):  # the assert below says what differs
            wait_for(caught_up, 15, "the served counts to catch up", interval=0.2)
        assert served == expected, f"served {dict(served)}, table {dict(expected)}"
    finally:
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        stop(proc)


def test_runs_before_the_first_read_count_older_runs_do_not(sqlite_db: Database) -> None:
    """The table exists and runs are recorded; the exporter starts, but its first read comes
    later (here: 1.5 s of runs later). Runs that ended after it started are counted; runs that
    ended before it started set the last-run gauges only."""
    scheduler = fast_scheduler(sqlite_db)
    add_fast_jobs(scheduler)
    scheduler.start()
    try:
        time.sleep(1.0)
        scheduler.pause()
        time.sleep(1.2)  # the last of those runs ends more than a second before the start
        engine = sqlite_db.engine()
        with engine.connect() as conn:
            before = conn.execute(sa.text("SELECT MAX(id) FROM job_execution")).scalar_one()
        engine.dispose()
        poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
        scheduler.resume()
        time.sleep(1.5)
    finally:
        scheduler.shutdown(wait=True)
    poller.poll()
    served: Counter[tuple[str, str]] = Counter()
    for family in SnapshotCollector(lambda: [poller.snapshot]).collect():
        for sample in family.samples:
            if sample.name == "apscheduler_job_runs_total" and sample.value:
                served[(sample.labels["job_id"], sample.labels["status"])] = int(sample.value)
    expected = table_counts(sqlite_db, above_id=before)
    assert expected[("quick", "success")] >= 10
    assert served == expected, f"served {dict(served)}, table {dict(expected)}"
    poller.close()
