"""Steady polls read digests, and the bytes only of changed rows (SQLite, PostgreSQL, MariaDB).

The job store SELECT returns a digest of ``job_state`` (``md5`` on the servers, a hash function
the sidecar gives its SQLite connection); a row's bytes are read (by id) only when its digest
changed, or when its fire times must be worked out again. Stores are written by a real
APScheduler; the statements the sidecar sends are observed on its own engine.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.triggers.interval import IntervalTrigger
from stores import SEED_JOBS, write_jobs
from support import Database

from exporter.sidecar.config import load_config
from exporter.sidecar.poller import StorePoller


class Statements:
    """The statements a poller's engine runs, as the driver gets them."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, object]] = []
        sa.event.listen(engine, "before_cursor_execute", self._note)

    def _note(self, conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        self.seen.append((statement, parameters))

    def take(self) -> list[tuple[str, object]]:
        seen, self.seen = self.seen, []
        return seen

    def state_reads(self) -> list[object]:
        """Parameters of the statements that read job_state bytes by id."""
        return [
            params
            for statement, params in self.take()
            if "job_state" in statement and " IN " in statement.upper() and "md5" not in statement
        ]

    def selects_bytes(self) -> bool:
        """Whether a statement seen so far returns job_state bytes other than by id."""
        return any(
            "job_state" in statement
            and " IN " not in statement.upper()
            and "md5(" not in statement
            and "jobstore_exporter_hash(" not in statement
            for statement, _params in self.seen
        )


def test_steady_polls_read_digests_and_changed_rows_only(any_db: Database) -> None:
    expected = write_jobs(any_db.url)
    poller = StorePoller(load_config(db_url=any_db.url).stores[0])
    statements = Statements(poller.engine)

    first = poller.poll()
    assert not statements.selects_bytes(), "the job store SELECT returns digests, not bytes"
    assert {job.id: job.next_run_time for job in first.jobs} == pytest.approx(expected)
    reads = statements.state_reads()
    assert reads, "the first poll reads every row's bytes"

    second = poller.poll()
    assert statements.state_reads() == [], "a steady poll reads no job_state"
    assert second.jobs == first.jobs
    assert all(a is b for a, b in zip(second.jobs, first.jobs, strict=True))

    paused = write_jobs(any_db.url, jobs=[], pause=("report_gen",))
    third = poller.poll()
    reads = statements.state_reads()
    assert len(reads) == 1 and "report_gen" in repr(reads[0])
    assert "cleanup_temp" not in repr(reads[0]) and "database_backup" not in repr(reads[0])
    by_id = {job.id: job for job in third.jobs}
    assert by_id["report_gen"].paused and paused["report_gen"] is None
    assert by_id["cleanup_temp"] is {job.id: job for job in second.jobs}["cleanup_temp"]
    poller.close()


def row_selects(statements: Statements) -> int:
    """How many of the statements seen so far fetched the job table's rows (the SELECT of ids,
    fire times and digests, or bytes by id), as opposed to its one-row fingerprint."""
    return sum(
        "apscheduler_jobs" in statement and "COUNT(" not in statement.upper()
        for statement, _params in statements.take()
    )


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_steady_sqlite_poll_skips_the_select_until_a_commit(
    sqlite_db: Database, journal: str
) -> None:
    """SQLite counts commits (``PRAGMA data_version``): with nothing written since the last
    read, a poll does not read the job table at all; any commit, a real scheduler's or another
    table's, makes the next poll read it again. The connection kept for the count holds no
    lock: a writer that will not wait commits between polls."""
    write_jobs(sqlite_db.url)
    path = sqlite_db.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as setup:
        setup.execute(f"PRAGMA journal_mode={journal}")
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0], with_history=False)
    statements = Statements(poller.engine)
    first = poller.poll()
    assert row_selects(statements) >= 1
    second = poller.poll()
    assert row_selects(statements) == 0, "nothing was committed: the job table is not read"
    assert second.jobs == first.jobs and second.sources["jobs"].ok

    impatient = sqlite3.connect(path, timeout=0, isolation_level=None)
    impatient.execute("BEGIN EXCLUSIVE")  # fails at once if any reader held a lock
    impatient.execute("CREATE TABLE unrelated (x)")
    impatient.execute("COMMIT")
    impatient.close()
    poller.poll()
    assert row_selects(statements) >= 1, "a commit elsewhere in the file: read again"
    poller.poll()
    assert row_selects(statements) == 0

    write_jobs(sqlite_db.url, jobs=[], pause=("report_gen",))
    third = poller.poll()
    assert row_selects(statements) >= 1
    assert {job.id: job.paused for job in third.jobs}["report_gen"]
    poller.close()


def test_a_sqlite_file_replaced_under_its_path_is_read_again(sqlite_db: Database) -> None:
    """A restore that moves another file into place: the count of the old file's connection
    would show no commit, but the poll reads the new file, and keeps noticing its commits."""
    write_jobs(sqlite_db.url)
    poller = StorePoller(load_config(db_url=sqlite_db.url).stores[0], with_history=False)
    assert len(poller.poll().jobs) == len(SEED_JOBS)
    path = Path(sqlite_db.url.removeprefix("sqlite:///"))
    restored = path.with_name("restored.sqlite")
    write_jobs(f"sqlite:///{restored}", jobs=SEED_JOBS[:1])
    os.replace(restored, path)
    assert [job.id for job in poller.poll().jobs] == ["database_backup"]
    assert [job.id for job in poller.poll().jobs] == ["database_backup"]

    # A commit that leaves the file's size and time as they were (a coarse clock does that):
    # only the new file's own commit count can tell.
    before = path.stat()
    write_jobs(sqlite_db.url, jobs=[], pause=("database_backup",))
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert [job.paused for job in poller.poll().jobs] == [True]
    poller.close()


def settle(poller: StorePoller, statements: Statements) -> None:
    """Poll until a poll fetches no row (the store is known to be steady)."""
    for _ in range(3):
        statements.take()
        poller.poll()
        if row_selects(statements) == 0:
            return
    raise AssertionError("three polls of an unchanged store each fetched its rows")


def test_a_steady_server_store_sends_one_row_until_a_row_changes(any_db: Database) -> None:
    """On PostgreSQL and MariaDB, while the store stays the same, a poll asks the server for
    one row that changes whenever any row does (PostgreSQL's row versions; MariaDB's digests)
    instead of every row; a job paused by a real scheduler, a fire time moved by hand (even
    rewritten to the same value), a job removed and one added each show at the next poll."""
    write_jobs(any_db.url)
    poller = StorePoller(load_config(db_url=any_db.url).stores[0], with_history=False)
    statements = Statements(poller.engine)
    first = poller.poll()
    for _ in range(3):
        assert poller.poll().jobs == first.jobs
    statements.take()
    assert poller.poll().jobs == first.jobs
    assert row_selects(statements) == 0, "a steady poll does not fetch every row"

    write_jobs(any_db.url, jobs=[], pause=("report_gen",))
    assert {job.id: job.paused for job in poller.poll().jobs}["report_gen"]
    assert row_selects(statements) >= 1

    engine = sa.create_engine(any_db.url)
    before = {job.id: job.next_run_time for job in poller.poll().jobs}["cleanup_temp"]
    assert before is not None
    for moved in (before + 0.25, before + 0.25):  # the same value again: a write all the same
        settle(poller, statements)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE apscheduler_jobs SET next_run_time = :t WHERE id = 'cleanup_temp'"),
                {"t": moved},
            )
        by_id = {job.id: job for job in poller.poll().jobs}
        assert by_id["cleanup_temp"].next_run_time == pytest.approx(moved, abs=1e-6)
    engine.dispose()

    settle(poller, statements)
    write_jobs(any_db.url, jobs=[], remove=("cleanup_temp",))
    assert sorted(job.id for job in poller.poll().jobs) == ["database_backup", "report_gen"]
    settle(poller, statements)
    write_jobs(any_db.url, jobs=[{**SEED_JOBS[1], "id": "cleanup_again"}])
    ids = sorted(job.id for job in poller.poll().jobs)
    assert ids == ["cleanup_again", "database_backup", "report_gen"]
    poller.close()


def test_a_job_table_that_is_a_view_is_read_without_a_fingerprint(pg_db: Database) -> None:
    """A view has no row versions, so PostgreSQL refuses the fingerprint: the poll falls back
    to the SELECT and reports nothing wrong, and never asks again (each refusal is an ERROR in
    the server's log)."""
    write_jobs(pg_db.url)
    engine = sa.create_engine(pg_db.url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE VIEW jobs_view AS SELECT * FROM apscheduler_jobs"))
    engine.dispose()
    config = load_config(db_url=pg_db.url, jobs_table="jobs_view")
    poller = StorePoller(config.stores[0], with_history=False)
    statements = Statements(poller.engine)
    for _ in range(6):
        snapshot = poller.poll()
        assert snapshot.sources["jobs"].ok and len(snapshot.jobs) == len(SEED_JOBS)
    assert sum("xmin" in statement for statement, _params in statements.take()) == 1
    write_jobs(pg_db.url, jobs=[], pause=("report_gen",))
    assert {job.id: job.paused for job in poller.poll().jobs}["report_gen"]
    poller.close()


def test_a_steady_store_locked_past_the_timeout_fails_the_poll_and_recovers(
    pg_db: Database,
) -> None:
    """The fingerprint waits on a locked table as the SELECT would: past the statement timeout
    the poll fails, saying so, and the next poll after the lock is gone reads the store."""
    write_jobs(pg_db.url)
    poller = StorePoller(
        load_config(db_url=pg_db.url, statement_timeout=1).stores[0], with_history=False
    )
    statements = Statements(poller.engine)
    poller.poll()
    settle(poller, statements)
    locker = sa.create_engine(pg_db.url)
    with locker.connect() as conn, conn.begin():
        conn.execute(sa.text("LOCK TABLE apscheduler_jobs IN ACCESS EXCLUSIVE MODE"))
        failed = poller.poll()
        assert not failed.sources["jobs"].ok
        assert "statement timeout" in (failed.sources["jobs"].error or "")
    locker.dispose()
    recovered = poller.poll()
    assert recovered.sources["jobs"].ok and len(recovered.jobs) == len(SEED_JOBS)
    poller.close()


def test_fire_times_that_fall_due_in_an_unchanged_store_are_worked_out(any_db: Database) -> None:
    """Time passes, the store does not change (its scheduler is stopped): the table is not
    read again, yet each job's previous fire time follows the clock, as APScheduler's own
    trigger computes it."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = IntervalTrigger(seconds=35, start_date=start)
    write_jobs(any_db.url, jobs=[{"func": "sample_jobs:noop", "trigger": trigger, "id": "tick"}])
    now = [start.timestamp() + 100.0]
    poller = StorePoller(
        load_config(db_url=any_db.url).stores[0], clock=lambda: now[0], with_history=False
    )
    statements = Statements(poller.engine)
    poller.poll()
    settle(poller, statements)
    for later in (1_000.0, 5_000.0):
        now[0] = start.timestamp() + later
        (job,) = poller.poll().jobs
        seen = statements.take()
        assert not any(
            "apscheduler_jobs" in sql and "WHERE" not in sql.upper() and "COUNT(" not in sql.upper()
            for sql, _params in seen
        ), "no SELECT of the whole table"
        expected = start.timestamp() + (later // 35) * 35
        assert job.previous_fire_time == pytest.approx(expected, abs=1e-6)
    poller.close()


STOP_WHILE_POLLING = """
import sys, threading, time
from exporter.sidecar.config import load_config
from exporter.sidecar.poller import StorePoller

poller = StorePoller(load_config(db_url=sys.argv[1]).stores[0], with_history=False)
ends = time.monotonic() + 2.0

def poll_on():
    while time.monotonic() < ends:
        poller.poll()

thread = threading.Thread(target=poll_on)
thread.start()
while time.monotonic() < ends:
    poller.close()  # what `serve` does on SIGTERM, whatever the poll thread is doing
thread.join()
print("survived")
"""


def test_a_poller_stopped_in_the_middle_of_a_poll_does_not_crash_the_process(
    sqlite_db: Database,
) -> None:
    """The connection kept for SQLite's commit count is closed by whoever stops the poller,
    while the poll thread may be asking it: that must wait, not crash the process (it did,
    one SIGTERM in two during the first poll)."""
    write_jobs(sqlite_db.url)
    done = subprocess.run(
        [sys.executable, "-c", STOP_WHILE_POLLING, sqlite_db.url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "survived" in done.stdout, done.stderr[-2000:]
