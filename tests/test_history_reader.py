"""The history source on rows in the Aegis `job_execution` layout, on all three databases.

Rows are written the way Aegis apps and our recorder write them (insert `running`, update when
done, prune to the newest rows per job), with explicit timestamps so every expectation is exact.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support import Database

from exporter.shared.tables import history_table
from exporter.sidecar.config import load_config
from exporter.sidecar.db import reader_engine
from exporter.sidecar.snapshot import JobRuns
from exporter.sidecar.sources.history import HistorySource

T0 = datetime(2026, 11, 20, 2, 0, 0)  # naive UTC, as Aegis writes


def ts(offset: float) -> float:
    return (T0 + timedelta(seconds=offset)).replace(tzinfo=UTC).timestamp()


class History:
    """A real history table plus a HistorySource reading it, as the sidecar would."""

    def __init__(self, db: Database) -> None:
        self.engine = db.engine()
        self.table = history_table(sa.MetaData())
        self.table.metadata.create_all(self.engine)
        self.store = load_config(db_url=db.url).stores[0]
        self.source = HistorySource(self.store)
        self.reader = sa.create_engine(db.url)

    def insert(self, job_id: str, status: str, start: float | None, end: float | None = None,
               **extra: Any) -> int:  # fmt: skip
        values: dict[str, Any] = {
            "job_id": job_id,
            "job_name": job_id.title(),
            "scheduled_run_time": T0 + timedelta(seconds=start or 0),
            "started_at": T0 + timedelta(seconds=start) if start is not None else None,
            "finished_at": T0 + timedelta(seconds=end) if end is not None else None,
            "duration_ms": (end - start) * 1000 if end is not None and start is not None else None,
            "status": status,
            **extra,
        }
        with self.engine.begin() as conn:
            return int(conn.execute(self.table.insert().values(**values)).inserted_primary_key[0])

    def finish(self, row_id: int, status: str, start: float, end: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self.table.update()
                .where(self.table.c.id == row_id)
                .values(
                    status=status,
                    finished_at=T0 + timedelta(seconds=end),
                    duration_ms=(end - start) * 1000,
                )
            )

    def delete(self, *row_ids: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.id.in_(row_ids)))

    def poll(self, source: HistorySource | None = None) -> dict[str, JobRuns]:
        with self.reader.connect() as conn:
            result = (source or self.source).read(conn)
        return {runs.job_id: runs for runs in result.runs}

    def invalid(self) -> dict[str, int]:
        with self.reader.connect() as conn:
            return dict(self.source.read(conn).invalid_rows)

    def close(self) -> None:
        self.engine.dispose()
        self.reader.dispose()


@pytest.fixture
def history(any_db: Database) -> Iterator[History]:
    h = History(any_db)
    yield h
    h.close()


def test_first_poll_sets_gauges_but_counts_nothing(history: History) -> None:
    history.insert("backup", "success", 0, 10)
    history.insert("backup", "failed", 100, 105, error_message="disk full")
    history.insert("backup", "failed", 200, 230, error_message="disk still full")
    history.insert("report", "success", 0, 2)
    stats = history.poll()
    backup = stats["backup"]
    assert dict(backup.runs) == {"success": 0, "failed": 0, "missed": 0, "skipped": 0}
    assert backup.duration_count == 0
    assert backup.last_run_success is False
    assert backup.last_run_duration == pytest.approx(30)
    assert backup.last_success == ts(10)
    assert backup.last_failure == ts(230)
    assert backup.last_error == "disk still full"
    assert backup.consecutive_failures == 2
    assert stats["report"].last_run_success is True and stats["report"].consecutive_failures == 0


def test_runs_are_counted_once_as_they_finish(history: History) -> None:
    history.poll()
    row = history.insert("sync", "running", 0)
    stats = history.poll()["sync"]
    assert stats.running == 1 and stats.running_since == ts(0)
    assert sum(stats.runs.values()) == 0
    history.finish(row, "success", 0, 0.3)
    history.insert("sync", "missed", None)
    history.insert("sync", "skipped", None)
    history.insert("sync", "failed", 10, 12.5)
    stats = history.poll()["sync"]
    assert dict(stats.runs) == {"success": 1, "failed": 1, "missed": 1, "skipped": 1}
    assert stats.running == 0 and stats.running_since is None
    assert stats.duration_count == 2 and stats.duration_sum == pytest.approx(2.8)
    assert stats.bucket_counts[5] == 1  # 0.3 s falls in (0.25, 0.5]
    assert stats.last_run_success is False and stats.consecutive_failures == 1
    for _ in range(3):
        again = history.poll()["sync"]
    assert again.runs == stats.runs and again.duration_count == 2


def test_runs_finishing_out_of_order(history: History) -> None:
    history.poll()
    slow = history.insert("job", "running", 0)
    fast = history.insert("job", "running", 5)
    history.finish(fast, "success", 5, 6)
    assert history.poll()["job"].last_run_success is True
    # The slow run ends later, failing: it is now the most recent finished run.
    history.finish(slow, "failed", 0, 20)
    stats = history.poll()["job"]
    assert dict(stats.runs) == {"success": 1, "failed": 1, "missed": 0, "skipped": 0}
    assert stats.last_run_success is False and stats.consecutive_failures == 1
    # A failure that finished before the latest success never counts as consecutive.
    late = history.insert("job", "running", 30)
    early = history.insert("job", "running", 31)
    history.finish(early, "success", 31, 40)
    history.finish(late, "failed", 30, 35)
    stats = history.poll()["job"]
    assert stats.last_run_success is True
    assert stats.consecutive_failures == 0
    assert stats.last_failure == ts(35) and stats.last_success == ts(40)


def test_pruning_keeps_counters_exact(history: History) -> None:
    history.poll()
    ids = [history.insert("cleanup", "success", i * 10, i * 10 + 1) for i in range(5)]
    orphan = history.insert("cleanup", "running", 100)
    assert history.poll()["cleanup"].runs["success"] == 5
    history.delete(*ids[:4], orphan)  # Aegis keeps the newest rows per job
    stats = history.poll()["cleanup"]
    assert stats.runs["success"] == 5 and stats.running == 0
    history.insert("cleanup", "success", 200, 201)
    assert history.poll()["cleanup"].runs["success"] == 6


def test_a_restarted_reader_does_not_double_count(history: History) -> None:
    history.poll()
    for i in range(3):
        history.insert("job", "success", i, i + 0.5)
    first = history.poll()["job"]
    assert first.runs["success"] == 3
    restarted = HistorySource(history.store)
    again = history.poll(restarted)["job"]
    assert again.runs["success"] == 0  # a counter reset, which rate() handles; never 6
    assert again.last_success == first.last_success
    history.insert("job", "success", 10, 11)
    assert history.poll(restarted)["job"].runs["success"] == 1


def test_rows_committed_out_of_id_order_are_not_lost(history: History) -> None:
    history.poll()
    base = history.insert("job", "success", 0, 1)
    history.poll()
    # id base+2 commits first; base+1 (another transaction) only after the next poll.
    history.insert("job", "success", 20, 21, id=base + 2)
    assert history.poll()["job"].runs["success"] == 2
    history.insert("job", "failed", 10, 11, id=base + 1)
    stats = history.poll()["job"]
    assert stats.runs["success"] == 2 and stats.runs["failed"] == 1
    assert stats.last_run_success is True  # the failure finished before the latest success


def test_malformed_rows_are_skipped_and_counted(history: History) -> None:
    history.poll()
    history.insert("job", "success", 0, 1)
    history.insert("job", "exploded", 0, 1)
    history.insert("job", "success", 0, 1, duration_ms=-5)
    history.insert("job", "success", 0, 1, duration_ms=1e15)
    with history.engine.begin() as conn:  # NULL job_id, bypassing the NOT NULL of our layout
        conn.execute(
            sa.text(f"INSERT INTO {history.table.name} (job_id, status) VALUES ('', 'success')")
        )
    stats = history.poll()["job"]
    assert stats.runs["success"] == 1
    invalid = history.invalid()
    assert invalid == {"unknown status": 1, "absurd duration": 2, "missing job_id": 1}
    history.poll()
    assert history.invalid() == invalid  # each bad row is counted once


def test_newest_rows_deleted_then_ids_reused(sqlite_db: Database) -> None:
    """An Aegis-created SQLite table (no AUTOINCREMENT) reuses the id of a deleted newest row."""
    engine = sqlite_db.engine()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE job_execution (id INTEGER PRIMARY KEY, job_id VARCHAR(191) NOT NULL,"
                " job_name VARCHAR(255), scheduled_run_time DATETIME, started_at DATETIME,"
                " finished_at DATETIME, duration_ms INTEGER, status VARCHAR(16) NOT NULL,"
                " error_message TEXT, traceback TEXT)"
            )
        )
    engine.dispose()
    h = History(sqlite_db)
    h.poll()
    first = h.insert("job", "success", 0, 1)
    assert h.poll()["job"].runs["success"] == 1
    h.delete(first)
    h.poll()  # sees the table shrink
    assert h.insert("job", "failed", 5, 6) == first  # the same id, handed out again
    stats = h.poll()["job"]
    assert stats.runs["failed"] == 1 and stats.runs["success"] == 1
    h.close()


def test_unparseable_sqlite_timestamp(sqlite_db: Database) -> None:
    h = History(sqlite_db)
    h.poll()
    with h.engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {h.table.name} (job_id, status, started_at, finished_at) "
                "VALUES ('job', 'success', 'yesterday', 'today')"
            )
        )
    h.insert("job", "success", 0, 1)
    stats = h.poll()["job"]
    assert stats.runs["success"] == 1
    assert h.invalid() == {"unparseable timestamp": 1}
    h.close()


def test_a_jump_in_the_id_sequence(history: History) -> None:
    """PostgreSQL sequences jump after a crash; rows far above the cursor are still found."""
    history.poll()
    base = history.insert("job", "success", 0, 1)
    history.poll()
    history.insert("job", "failed", 10, 11, id=base + 250_000)
    history.insert("job", "success", 20, 21, id=base + 250_001)
    stats = history.poll()["job"]
    assert stats.runs["failed"] == 1 and stats.runs["success"] == 2
    history.insert("job", "success", 30, 31, id=base + 250_002)  # the sequence carries on
    assert history.poll()["job"].runs["success"] == 3


def test_sub_second_times_survive_every_backend(history: History) -> None:
    """MySQL and MariaDB keep whole seconds in a plain DATETIME; our layout keeps microseconds."""
    history.poll()
    history.insert("job", "success", 0.25, 0.75)
    stats = history.poll()["job"]
    assert stats.last_success == pytest.approx(ts(0.75), abs=1e-6)
    assert stats.last_run_duration == pytest.approx(0.5, abs=1e-6)


def test_runs_ending_during_the_first_read_are_counted_once(any_db: Database) -> None:
    """The exporter reads in autocommit, so each statement of its first read sees the table as
    of its own moment, and the scheduler's writer commits in between. Whichever statement a
    run's end and the next run's start land before, each run is counted exactly once (before,
    a run seen `running` and then finished within the first read, or started just after its
    first statement, was counted twice: served 31 failed runs where the table held 30)."""
    h = History(any_db)
    reader = reader_engine(sa.make_url(any_db.url), 10.0)
    wrong: dict[int, dict[str, Any]] = {}
    try:
        for step in itertools.count():
            job = f"job{step}"
            source = HistorySource(h.store)
            now = time.time() - ts(0)  # as an offset from T0: after the exporter started
            first = h.insert(job, "running", now)
            later: list[int] = []

            def writer_commits(
                first: int = first, job: str = job, later: list[int] = later, now: float = now
            ) -> None:
                h.finish(first, "success", now, now + 0.1)
                later.append(h.insert(job, "running", now + 0.2))

            with before_statement(reader, step, writer_commits), reader.connect() as conn:
                source.read(conn)
            if not later:  # the first read has fewer statements than this: all were tried
                break
            h.finish(later[0], "failed", now + 0.2, now + 0.3)
            for poll in range(2):
                with reader.connect() as conn:
                    runs = {r.job_id: r for r in source.read(conn).runs}[job]
                seen = {
                    **runs.runs,
                    "running": runs.running,
                    "consecutive_failures": runs.consecutive_failures,
                    "last_run_success": runs.last_run_success,
                }
                if seen != {"success": 1, "failed": 1, "missed": 0, "skipped": 0, "running": 0,
                            "consecutive_failures": 1, "last_run_success": False}:  # fmt: skip
                    wrong[step] = {"poll": poll + 2, **seen}
        assert step >= 7  # the first read's statements were each tried
        assert not wrong, f"by the statement the writer committed before: {wrong}"
    finally:
        reader.dispose()
        h.close()


def test_a_late_row_below_deleted_newest_rows_is_counted_once(history: History) -> None:
    """An id the reader passed while its transaction was still open is re-checked later; if
    the newest rows are deleted meanwhile, the reader goes back to the highest id left and
    reads that id as a new row. It must not be counted by the re-check as well."""
    history.poll()
    base = history.insert("job", "success", 0, 1)
    history.poll()
    history.insert("job", "success", 20, 21, id=base + 2)  # base+1 not committed yet
    assert history.poll()["job"].runs["success"] == 2
    history.delete(base + 2)
    history.poll()  # the table shrank: reading goes on from base
    history.insert("job", "failed", 10, 11, id=base + 1)  # the late transaction commits
    for _ in range(2):
        stats = history.poll()["job"]
        assert stats.runs["success"] == 2 and stats.runs["failed"] == 1


@contextlib.contextmanager
def before_statement(engine: sa.Engine, index: int, action: Callable[[], None]) -> Iterator[None]:
    """Run `action` (a writer's commit) just before the `index`-th statement sent on `engine`."""
    sent = 0

    def hook(*_: Any) -> None:
        nonlocal sent
        if sent == index:
            action()
        sent += 1

    sa.event.listen(engine, "before_cursor_execute", hook)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", hook)
