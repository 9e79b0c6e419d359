"""Real schedulers, instrumented by the kit, against the sidecar's history metrics.

What an independent APScheduler listener observes is the truth; the counts the sidecar serves
must equal it exactly, and durations must be the real run times.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import sqlalchemy as sa
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from support import Database, wait_for

from exporter.kit import instrument
from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.poller import StorePoller

STATUS = {
    EVENT_JOB_EXECUTED: "success",
    EVENT_JOB_ERROR: "failed",
    EVENT_JOB_MISSED: "missed",
    EVENT_JOB_MAX_INSTANCES: "skipped",
}


def samples(poller: StorePoller) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    collector = SnapshotCollector(lambda: [poller.snapshot], heartbeat_timeout=5)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_metrics_equal_what_the_scheduler_did(any_db: Database) -> None:
    store = SQLAlchemyJobStore(url=any_db.url)
    scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
    observed: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    def listen(event: JobEvent) -> None:
        with lock:
            observed[(event.job_id, STATUS[event.code])] += 1

    scheduler.add_listener(listen, mask=sum(STATUS))
    instrument(scheduler, any_db.url, heartbeat_interval=0.3)
    config = load_config(db_url=any_db.url, heartbeat_timeout=5)
    poller = StorePoller(config.stores[0])
    scheduler.start()
    inspector = any_db.engine()
    wait_for(lambda: sa.inspect(inspector).has_table("job_execution"))
    inspector.dispose()
    poller.poll()  # the sidecar is up before any run: every run is counted
    scheduler.add_job("sample_jobs:noop", IntervalTrigger(seconds=0.25), id="quick")
    scheduler.add_job("sample_jobs:fail", IntervalTrigger(seconds=0.4), id="broken")
    scheduler.add_job(
        "time:sleep", IntervalTrigger(seconds=0.2), args=[0.5], id="slow", max_instances=1
    )
    time.sleep(2.5)
    running = samples(poller := _poll(poller))
    scheduler.shutdown(wait=True)  # flushes the recorder
    final = samples(_poll(poller))

    def value(data: dict, metric: str, **labels: str) -> float | None:  # type: ignore[type-arg]
        return data.get((metric, frozenset({"jobstore": "default", **labels}.items())))

    assert observed[("quick", "success")] >= 5
    assert observed[("broken", "failed")] >= 3
    assert observed[("slow", "skipped")] >= 1
    # The jobs are still in the store (shutdown keeps them), so every series is served.
    for job_id in ("quick", "broken", "slow"):
        for status in ("success", "failed", "missed", "skipped"):
            served = value(final, "apscheduler_job_runs_total", job_id=job_id, status=status)
            assert served == observed[(job_id, status)], (job_id, status)
    assert (
        value(final, "apscheduler_job_consecutive_failures", job_id="broken")
        == (observed[("broken", "failed")])
    )
    assert value(final, "apscheduler_job_last_run_success", job_id="quick") == 1
    slow = value(final, "apscheduler_job_last_run_duration_seconds", job_id="slow")
    # The run's real length: at least the sleep, and no queueing time (a busy machine can
    # oversleep a little; the recorder's own 20 ms accuracy is checked in tests/kit).
    assert slow is not None and 0.5 <= slow < 0.6
    count = value(final, "apscheduler_job_run_duration_seconds_count", job_id="slow")
    assert count == observed[("slow", "success")]
    # While it ran: a live heartbeat; after shutdown: the scheduler reports stopped.
    beats = [k for k in running if k[0] == "apscheduler_scheduler_running"]
    assert len(beats) == 1 and running[beats[0]] == 1
    assert final[beats[0]] == 0
    assert value(final, "apscheduler_job_running", job_id="slow") == 0
    poller.close()


def _poll(poller: StorePoller) -> StorePoller:
    poller.poll()
    return poller
