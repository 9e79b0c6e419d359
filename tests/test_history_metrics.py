"""History, backup and heartbeat series as /metrics renders them, from a real store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from stores import write_jobs
from support import Database
from test_history_reader import History

from exporter.shared.tables import heartbeat_table
from exporter.sidecar.config import load_config
from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.poller import StorePoller

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def collect(poller: StorePoller, **options: object) -> Samples:
    collector = SnapshotCollector(lambda: [poller.snapshot], **options)  # type: ignore[arg-type]
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
    }


def get(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset({"jobstore": "default", **labels}.items())))


@pytest.fixture
def setup(sqlite_db: Database) -> tuple[History, StorePoller]:
    write_jobs(sqlite_db.url)
    history = History(sqlite_db)
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    poller.poll()
    return history, poller


def test_history_series_per_job(setup: tuple[History, StorePoller]) -> None:
    history, poller = setup
    history.insert("cleanup_temp", "success", 0, 0.2)
    history.insert("cleanup_temp", "failed", 10, 13, error_message="boom")
    history.insert("report_gen", "running", 20)
    history.insert("gone_job", "success", 0, 1)  # not in the job store: no series
    poller.poll()
    samples = collect(poller)
    assert get(samples, "apscheduler_history_up") == 1
    assert get(samples, "apscheduler_job_runs_total", job_id="cleanup_temp", status="failed") == 1
    assert get(samples, "apscheduler_job_runs_total", job_id="cleanup_temp", status="missed") == 0
    # A job that never ran has no run series at all (cardinality: most jobs of a big store).
    never = get(samples, "apscheduler_job_runs_total", job_id="database_backup", status="success")
    assert never is None
    bucket = get(samples, "apscheduler_job_run_duration_seconds_bucket", job_id="cleanup_temp",
                 le="0.5")  # fmt: skip
    assert bucket == 1
    inf = get(samples, "apscheduler_job_run_duration_seconds_bucket", job_id="cleanup_temp",
              le="+Inf")  # fmt: skip
    assert inf == 2
    total = get(samples, "apscheduler_job_run_duration_seconds_sum", job_id="cleanup_temp")
    assert total == pytest.approx(3.2)
    assert get(samples, "apscheduler_job_last_run_success", job_id="cleanup_temp") == 0
    assert get(samples, "apscheduler_job_consecutive_failures", job_id="cleanup_temp") == 1
    assert get(samples, "apscheduler_job_running", job_id="report_gen") == 1
    assert get(samples, "apscheduler_job_running_since_timestamp_seconds", job_id="report_gen")
    assert get(samples, "apscheduler_job_last_run_success", job_id="database_backup") is None
    assert not [k for k in samples if dict(k[1]).get("job_id") == "gone_job"]


def test_expected_run_reveals_a_skipped_backup(setup: tuple[History, StorePoller]) -> None:
    _, poller = setup
    samples = collect(poller)
    expected = get(samples, "apscheduler_job_expected_run_timestamp_seconds",
                   job_id="database_backup")  # fmt: skip
    now = datetime.now(UTC)
    last_2am = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if last_2am > now:
        last_2am -= timedelta(days=1)
    assert expected == last_2am.timestamp()


def test_backup_results_from_the_backup_jobs_runs(setup: tuple[History, StorePoller]) -> None:
    history, poller = setup
    history.insert("database_backup", "success", 0, 4)
    history.insert("database_backup", "failed", 86400, 86402, error_message="No space left")
    poller.poll()
    samples = collect(poller, backup_job_ids={"default": "database_backup"})
    assert get(samples, "apscheduler_backup_last_run_success") == 0
    assert get(samples, "apscheduler_backup_last_duration_seconds") == pytest.approx(2)
    assert get(samples, "apscheduler_backup_last_failure_timestamp_seconds") == pytest.approx(
        history_ts(86402)
    )
    history.insert("database_backup", "success", 2 * 86400, 2 * 86400 + 3)
    poller.poll()
    samples = collect(poller, backup_job_ids={"default": "database_backup"})
    assert get(samples, "apscheduler_backup_last_run_success") == 1
    assert get(samples, "apscheduler_backup_last_success_timestamp_seconds") == pytest.approx(
        history_ts(2 * 86400 + 3)
    )


def history_ts(offset: float) -> float:
    from test_history_reader import ts

    return ts(offset)


def test_heartbeats(sqlite_db: Database, setup: tuple[History, StorePoller]) -> None:
    _, poller = setup
    table = heartbeat_table(sa.MetaData())
    engine = sqlite_db.engine()
    table.metadata.create_all(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"scheduler_id": "web-1:10", "host": "web-1", "pid": 10, "state": "running",
                 "last_seen": now},
                {"scheduler_id": "web-2:11", "host": "web-2", "pid": 11, "state": "running",
                 "last_seen": now - timedelta(minutes=5)},
                {"scheduler_id": "web-3:12", "host": "web-3", "pid": 12, "state": "paused",
                 "last_seen": now},
                {"scheduler_id": "old:1", "host": "old", "pid": 1, "state": "stopped",
                 "last_seen": now - timedelta(days=2)},
            ],
        )  # fmt: skip
    engine.dispose()
    poller.poll()
    samples = collect(poller, heartbeat_timeout=30)
    assert get(samples, "apscheduler_scheduler_running", scheduler="web-1:10") == 1
    assert get(samples, "apscheduler_scheduler_running", scheduler="web-2:11") == 0  # stale
    assert get(samples, "apscheduler_scheduler_running", scheduler="web-3:12") == 0  # paused
    assert get(samples, "apscheduler_scheduler_running", scheduler="old:1") is None  # forgotten
    seen = get(samples, "apscheduler_scheduler_last_heartbeat_timestamp_seconds",
               scheduler="web-1:10")  # fmt: skip
    assert seen == pytest.approx(time.time(), abs=5)


def test_no_history_table_means_history_down_not_a_crash(sqlite_db: Database) -> None:
    write_jobs(sqlite_db.url)
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0])
    snapshot = poller.poll()
    assert snapshot.up and not snapshot.source_ok("history")
    assert snapshot.source_ok("heartbeats")  # optional table: absent is not an error
    samples = collect(poller)
    assert get(samples, "apscheduler_history_up") == 0
    assert get(samples, "jobstore_exporter_poll_errors_total", source="history") == 1
    assert get(samples, "apscheduler_up") == 1
    assert not [k for k in samples if k[0] == "apscheduler_job_runs_total"]
