"""The cardinality guard: include/exclude patterns and the per-store cap on per-job series."""

from __future__ import annotations

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from stores import write_jobs
from support import Database

from exporter.sidecar.config import ConfigError, load_config
from exporter.sidecar.metrics.collector import SnapshotCollector
from exporter.sidecar.poller import make_pollers


def scrape(db: Database, **settings: object) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    pollers = make_pollers(load_config(db_url=db.url, **settings))
    for poller in pollers:
        poller.poll()
        poller.close()
    collector = SnapshotCollector(lambda: [p.snapshot for p in pollers])
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
    }


def job_ids(samples: dict, metric: str = "apscheduler_job_info") -> set[str]:  # type: ignore[type-arg]
    return {dict(labels)["job_id"] for name, labels in samples if name == metric}


@pytest.fixture
def store(sqlite_db: Database) -> Database:
    jobs = [
        {"func": "sample_jobs:noop", "trigger": IntervalTrigger(minutes=m), "id": job_id}
        for m, job_id in enumerate(
            ["backup_db", "backup_files", "report_daily", "report_weekly", "tmp_cleanup"], start=1
        )
    ]
    write_jobs(sqlite_db.url, jobs)
    return sqlite_db


def excluded(samples: dict, reason: str) -> float | None:  # type: ignore[type-arg]
    key = (
        "jobstore_exporter_jobs_excluded",
        frozenset({"jobstore": "default", "reason": reason}.items()),
    )
    return samples.get(key)


def test_everything_by_default(store: Database) -> None:
    samples = scrape(store)
    assert len(job_ids(samples)) == 5
    assert excluded(samples, "filter") == 0 and excluded(samples, "limit") == 0


def test_include_and_exclude_patterns(store: Database) -> None:
    samples = scrape(store, include_jobs=["backup_.*", "report_.*"], exclude_jobs=[".*_weekly"])
    assert job_ids(samples) == {"backup_db", "backup_files", "report_daily"}
    assert job_ids(samples, "apscheduler_job_next_run_timestamp_seconds") == job_ids(samples)
    # Aggregates still count the whole store.
    active = ("apscheduler_jobs", frozenset({"jobstore": "default", "state": "active"}.items()))
    assert samples[active] == 5
    assert excluded(samples, "filter") == 2


def test_cap_keeps_the_jobs_that_fire_soonest(store: Database) -> None:
    samples = scrape(store, max_jobs=2)
    assert job_ids(samples) == {"backup_db", "backup_files"}  # every 1 and 2 minutes
    assert excluded(samples, "limit") == 3


def test_bad_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"include_jobs: .*'backup_\(' is not a valid regular"):
        load_config(db_url="sqlite:////x", include_jobs=["backup_("])


def test_patterns_from_environment(store: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSTORE_EXPORTER_EXCLUDE_JOBS", '["tmp_.*"]')
    assert job_ids(scrape(store)) == {
        "backup_db", "backup_files", "report_daily", "report_weekly"
    }  # fmt: skip
