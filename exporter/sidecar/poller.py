"""Polls one job store's sources and publishes a new immutable snapshot each time.

The poller owns everything stateful about reading (engine, decode cache, history cursor, error
counts, backoff) so the snapshot it publishes can stay a plain value. Each source is read in turn
over one short-lived connection and succeeds or fails on its own. When a source fails, the
previous snapshot's data for it is kept, the source is marked down, the error is counted and
logged as one line, and the first poll that succeeds after an outage publishes fresh data.

While the job store fails, full polls (and their log lines) back off, doubling up to
``max_backoff``, so a struggling database is not hammered and the log stays readable. But the
database is still asked once per poll interval whether it answers at all (a connect and a query
of the job table that reads no row), and a full poll follows as soon as it does: recovery (the
server back, the table created) shows within one interval, not after the backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from exporter.sidecar.config import Config, StoreConfig
from exporter.sidecar.db import reader_engine
from exporter.sidecar.selection import JobSelector
from exporter.sidecar.snapshot import SourceStatus, StoreSnapshot
from exporter.sidecar.sources.backups import BackupDirSource
from exporter.sidecar.sources.heartbeats import HeartbeatSource
from exporter.sidecar.sources.history import HistorySource
from exporter.sidecar.sources.jobs import JobStoreSource
from exporter.sidecar.store_errors import explain, headline

log = logging.getLogger(__name__)

REPEAT_LOG_EVERY = 600.0
"""An optional source that keeps failing the same way is logged again only this often."""
MAX_DOUBLINGS = 32
"""The backoff exponent's cap: past it the wait is max_backoff anyway, and an uncapped exponent
overflows a float after 1,024 failures in a row (which would kill the poll loop)."""

Reader = Callable[[sa.Connection, float], dict[str, Any]]
FileReader = Callable[[float], dict[str, Any]]
"""A source read without the database connection (the backup directory)."""


def _lost(exc: BaseException) -> bool:
    """The connection broke under the read (a restarted server, a network cut)."""
    return isinstance(exc, sa.exc.DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError)
    )


def _overloaded(exc: BaseException) -> bool:
    """The database is there but did not answer in time (a lock, a statement timeout)."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    text = str(exc.orig).lower()
    return any(word in text for word in _OVERLOADED)


_OVERLOADED = ("database is locked", "timeout", "canceling statement", "max_statement_time")


def make_pollers(config: Config) -> list[StorePoller]:
    """One poller per configured store, with the sidecar's selection and heartbeat settings."""
    settings = config.settings
    selector = JobSelector(settings.include_jobs, settings.exclude_jobs, settings.max_jobs)
    return [
        StorePoller(
            store,
            heartbeat_forget_after=settings.heartbeat_forget_after,
            selector=selector,
        )
        for store in config.stores
    ]


class StorePoller:
    """Reads one store on demand (``poll``) or forever (``run``)."""

    def __init__(
        self,
        store: StoreConfig,
        *,
        clock: Callable[[], float] = time.time,
        engine: sa.Engine | None = None,
        heartbeat_forget_after: float = 3600.0,
        with_history: bool = True,
        with_heartbeats: bool | None = None,
        selector: JobSelector | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.engine = engine or reader_engine(store.url, store.statement_timeout)
        jobs = self._jobs = JobStoreSource(store)
        self.readers: dict[str, Reader] = {"jobs": self._read_jobs(jobs, selector)}
        if with_history:
            history = HistorySource(store)
            self.readers["history"] = self._read_history(history)
        if with_history if with_heartbeats is None else with_heartbeats:
            # `check` reads them without history: a stopped scheduler is not a stalled one.
            beats = HeartbeatSource(store, heartbeat_forget_after)
            self.readers["heartbeats"] = lambda conn, now: {"heartbeats": beats.read(conn, now)}
        # Read even when the database is unreachable: the files are there or not regardless.
        self.file_readers: dict[str, FileReader] = {}
        if with_history and store.backup_dir is not None:
            backups = BackupDirSource(store)
            self.file_readers["backups"] = lambda now: {"backup_files": backups.read(now)}
        self.snapshot = StoreSnapshot(jobstore=store.name, taken_at=clock())
        self.failures_in_row = 0
        self.interval, self.max_backoff = 15.0, 120.0  # the defaults; ``run`` sets them
        # Whether a passing connect check means the next poll will likely work: after a
        # failure to connect, a lost connection or an error answer (a missing table), not after
        # a lock or timeout (the database is there, but struggling: keep backing off).
        self.check_first = False
        self._check = sa.select(jobs.table.c.id).where(sa.false())
        self._next_full_poll = 0.0  # monotonic; while failing, full polls wait for this
        self._outage_logged_at = -math.inf  # monotonic; stuck-poll lines are rate-limited
        self._probe: asyncio.Future[bool] | None = None
        # Polls on one thread of their own (the allocator keeps an arena per thread; see
        # exporter.sidecar.memory). The connect check runs elsewhere: it must not queue behind a
        # poll stuck on a black hole.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"poll-{store.name}")
        self._last_logged: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def deadline(self) -> float:
        """How long a poll may run before the store is reported down: one poll interval plus
        one statement timeout. Each query is bounded by the statement timeout on the server;
        this bounds the poll from our side, for what the server cannot see (a black-holed
        connection), soon enough that ``apscheduler_up`` does not claim a silent store is up."""
        return self.interval + self.store.statement_timeout

    @staticmethod
    def _read_jobs(source: JobStoreSource, selector: JobSelector | None) -> Reader:
        def read(connection: sa.Connection, now: float) -> dict[str, Any]:
            result = source.read(connection, now)
            update: dict[str, Any] = {
                "jobs": result.jobs,
                "undecodable": result.undecodable,
                "ever_succeeded": True,
            }
            if selector is not None:
                chosen = selector.select(result.jobs)
                update["selected"] = chosen.jobs
                update["excluded"] = MappingProxyType(
                    {"filter": chosen.excluded_by_filter, "limit": chosen.excluded_by_limit}
                )
            return update

        return read

    @staticmethod
    def _read_history(source: HistorySource) -> Reader:
        def read(connection: sa.Connection, now: float) -> dict[str, Any]:
            result = source.read(connection, now)
            return {"history": result.runs, "invalid_history_rows": result.invalid_rows}

        return read

    def poll(self) -> StoreSnapshot:
        """Read every source once (blocking) and publish the resulting snapshot.

        Only one poll runs at a time (a stuck one holds the lock; see ``run``). The result is
        laid over the snapshot current at the end, so failures published meanwhile by ``run``
        (a missed deadline) are not lost.
        """
        with self._lock:
            return self._poll()

    def _poll(self) -> StoreSnapshot:
        updates: dict[str, Any] = {}
        statuses: dict[str, SourceStatus] = {}
        connection_error: BaseException | None = None
        jobs_error: BaseException | None = None
        try:
            with self.engine.connect() as connection:
                for name, read in self.readers.items():
                    started = time.perf_counter()
                    try:
                        updates.update(read(connection, self.clock()))
                    except Exception as exc:  # noqa: BLE001 - reported, never raised
                        statuses[name] = self._failed(name, exc, started)
                        jobs_error = exc if name == "jobs" else jobs_error
                        if _lost(exc) or _overloaded(exc):
                            # The next reads would wait out the same lock or timeout: the
                            # poll fails within one statement timeout, not one per source.
                            connection_error = exc
                            break
                    else:
                        statuses[name] = self._succeeded(name, started)
        except Exception as exc:  # noqa: BLE001 - the connection itself failed
            connection_error = exc
        error = connection_error or jobs_error
        self.check_first = error is not None and not _overloaded(error)
        now = self.clock()
        for name in self.readers:
            if name not in statuses:  # not reached: connecting failed, say so once per poll
                assert connection_error is not None
                quiet = name != "jobs"
                statuses[name] = self._failed(name, connection_error, time.perf_counter(), quiet)
        for name, read_files in self.file_readers.items():
            started = time.perf_counter()
            try:
                updates.update(read_files(self.clock()))
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                statuses[name] = self._failed(name, exc, started)
            else:
                statuses[name] = self._succeeded(name, started)
        snapshot = replace(self.snapshot, taken_at=now, **updates)
        for name, status in statuses.items():
            snapshot = snapshot.with_source(name, status)
        jobs_ok = statuses["jobs"].ok
        if jobs_ok and self.failures_in_row:
            log.info("jobstore %s: job store readable again", self.store.name)
            self._outage_logged_at = -math.inf
        self.failures_in_row = 0 if jobs_ok else self.failures_in_row + 1
        self.snapshot = snapshot
        return snapshot

    def _succeeded(self, name: str, started: float) -> SourceStatus:
        old = self.snapshot.sources.get(name, SourceStatus(ok=False))
        if self._last_logged.pop(name, None) is not None and name != "jobs":
            log.info("jobstore %s: %s readable again", self.store.name, name)
        return replace(
            old,
            ok=True,
            duration=time.perf_counter() - started,
            last_success=self.clock(),
            error=None,
        )

    def _failed(
        self, name: str, exc: BaseException, started: float, quiet: bool = False
    ) -> SourceStatus:
        old = self.snapshot.sources.get(name, SourceStatus(ok=False))
        message = explain(exc, self.store, self.engine, name)
        if not quiet:
            self._log_failure(name, message)
        return replace(
            old,
            ok=False,
            duration=time.perf_counter() - started,
            errors_total=old.errors_total + 1,
            error=message,
        )

    def _log_failure(self, name: str, message: str) -> None:
        """Job store failures: one line per poll. Others, and configuration mistakes (a missing
        table, a refused login) that repeat at every backoff step: when the error changes, or
        rarely."""
        now = time.monotonic()
        if name != "jobs" or headline(message) is not None:
            previous = self._last_logged.get(name)
            if previous and previous[0] == message and now - previous[1] < REPEAT_LOG_EVERY:
                return
            self._last_logged[name] = (message, now)
        label = "job store" if name == "jobs" else name
        log.warning("jobstore %s: %s poll failed: %s", self.store.name, label, message)

    def next_delay(self, interval: float, max_backoff: float) -> float:
        """The wait before the next full poll: the poll interval, doubled per consecutive
        failure up to ``max_backoff`` (the exponent is capped, so it never overflows)."""
        if not self.failures_in_row:
            return interval
        doublings = min(self.failures_in_row - 1, MAX_DOUBLINGS)
        return min(max(interval, max_backoff), interval * 2.0**doublings)

    async def run(
        self,
        interval: float,
        max_backoff: float,
        after_poll: Callable[[], None] | None = None,
    ) -> None:
        """Poll forever in a worker thread so the event loop keeps serving scrapes.

        A poll that misses its deadline is reported as failed right away (the snapshot must not
        go on claiming the store is up); its thread is left to finish or fail on its own, and
        until it does no new poll starts, so sources are never read by two threads at once.

        Nothing ends the loop but cancellation: an unexpected error in one round is logged with
        its traceback and counted (``jobstore_exporter_poll_loop_restarts_total``), and the loop
        starts again after one interval.
        """
        self.interval, self.max_backoff = interval, max_backoff  # a reload may change them
        while True:
            try:
                await self._round()
                if after_poll is not None:
                    after_poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a poll loop must never die
                log.exception("jobstore %s: poll loop failed; restarting it", self.store.name)
                self.note_restart()
            await asyncio.sleep(self.interval)

    def note_restart(self) -> None:
        """Count a poll loop that failed and was started again (it shows in the snapshot)."""
        restarts = self.snapshot.poll_loop_restarts + 1
        self.snapshot = replace(self.snapshot, poll_loop_restarts=restarts)

    async def _round(self) -> None:
        """One tick of the loop: a full poll, or while failing, a cheap check first."""
        if self._lock.locked():
            self.report_stuck("the previous poll is still waiting for the database")
            return
        backing_off = self.failures_in_row and time.monotonic() < self._next_full_poll
        # Backing off: only check whether the job table answers; a full poll at once if it does
        # (unless the database was merely slow or locked: then the backoff stands).
        if backing_off and not (self.check_first and await self._answers()):
            return
        poll = asyncio.get_running_loop().run_in_executor(self._thread, self.poll)
        done, _ = await asyncio.wait({poll}, timeout=self.deadline)
        if not done:
            self.report_stuck(f"no answer within {self.deadline:.0f} s")
        if self.failures_in_row:
            delay = self.next_delay(self.interval, self.max_backoff)
            self._next_full_poll = time.monotonic() + delay

    async def _answers(self) -> bool:
        """Whether the database takes a connection and answers a query of the job table that
        reads no row (``WHERE false``: as cheap at a million jobs as at ten) within the
        deadline. One check at a time: one that hangs (a black hole) is not joined by more."""
        if self._probe is not None and not self._probe.done():
            return False
        self._probe = asyncio.ensure_future(asyncio.to_thread(self._ping))
        done, _ = await asyncio.wait({self._probe}, timeout=self.deadline)
        return bool(done) and self._probe.result()

    def _ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(self._check).all()
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        return True

    def report_stuck(self, reason: str) -> None:
        """Mark every source failed because the database does not answer at all.

        The data of the last good poll stays (its series go on being served); only the
        statuses change, so ``apscheduler_up`` says 0. Logged once, then on the backoff's
        schedule while it lasts.
        """
        message = f"poll did not finish: {reason} ({self.store.display_url})"
        now = time.monotonic()
        if now - self._outage_logged_at >= self.next_delay(self.interval, self.max_backoff):
            log.warning("jobstore %s: %s", self.store.name, message)
            self._outage_logged_at = now
        snapshot = replace(self.snapshot, taken_at=self.clock())
        for name in self.readers:
            old = snapshot.sources.get(name, SourceStatus(ok=False))
            failed = replace(old, ok=False, errors_total=old.errors_total + 1, error=message)
            snapshot = snapshot.with_source(name, failed)
        self.failures_in_row += 1
        self.check_first = True
        self.snapshot = snapshot

    def close(self) -> None:
        self._thread.shutdown(wait=False)  # a poll stuck on a black hole ends on its own
        self._jobs.close()
        self.engine.dispose()
