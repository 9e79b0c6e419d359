"""The bounded batching writer thread: every database round trip of the kit.

Nothing here runs on the scheduler's thread or event loop except `HistoryWriter.put_start` and
`HistoryWriter.put_final`, which only append to an in-memory buffer under a lock. One daemon
thread per recorder owns every database round trip: history rows in batches, plus the periodic
chores (heartbeats, crash recovery, retention) registered as `Task`s (``chores.py``). How rows
become statements, and which errors are retried, is in ``batches.py``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from exporter.kit import chores
from exporter.kit.batches import (
    INSERT,
    STATEMENT_PAUSE,
    Item,
    Pending,
    is_transient,
    statements,
    take,
    update_statement,
)
from exporter.kit.engine import describe_error, describe_url
from exporter.kit.outage import Outage

log = logging.getLogger("exporter.kit")

__all__ = ["HistoryWriter", "WriterStats"]


@dataclass(frozen=True)
class WriterStats:
    written: int
    """History rows written (an insert and its later update count once each)."""
    pending: int
    """Rows in the buffer, including a batch being written."""
    dropped_rows: int
    """Finished runs lost because the buffer was full (overflow)."""
    dropped_starts: int
    """`running` rows not written because the buffer was full; the run still gets its row."""
    overflow_bursts: int
    rejected: int
    """Rows the database refused outright (e.g. a constraint), dropped after one try each."""
    write_errors: int
    """Failed write attempts (each retried)."""


class HistoryWriter:
    """A bounded buffer of history rows and the daemon thread that writes it in batches.

    Rows are keyed by `run_id`. A run's final row replaces its still-buffered `running` row, so a
    quick job costs one INSERT; if the `running` row was already written, the final row becomes
    an UPDATE. Up to `max_pending` rows wait in memory while the database is unreachable; the
    writer retries with exponential backoff and loses nothing in between. Beyond that, new
    `running` rows are skipped first (their runs are still recorded when they finish) and then
    new rows are dropped; each burst of overflow is logged twice (start and end), never per row.
    """

    def __init__(
        self,
        engine: sa.Engine,
        table: sa.Table,
        *,
        max_pending: int = 10_000,
        batch_size: int = 500,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        startup: Callable[[], None] | None = None,
        repair: Callable[[], None] | None = None,
        describe: str = "",
    ) -> None:
        if max_pending < 1 or batch_size < 1:
            raise ValueError("max_pending and batch_size must be at least 1")
        self.engine = engine
        self.table = table
        self.max_pending = max_pending
        self.batch_size = batch_size
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._startup = startup
        self._repair = repair
        self._describe = describe or describe_url(engine.url)
        self.tasks: list[chores.Task] = []

        self._insert = table.insert()
        self._update = update_statement(table)

        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        self._pending: Pending = {}
        self._inflight: list[Item] | None = None
        self._open: set[str] = set()  # run_ids whose `running` row the writer has taken
        self._flush_seq = 0
        self._done_seq = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._started_up = startup is None

        self._written = 0
        self._dropped_rows = 0
        self._dropped_starts = 0
        self._bursts = 0
        self._burst_rows = 0
        self._burst_starts = 0
        self._in_burst = False
        self._rejected = 0
        self._outage = Outage(engine, self._describe)

    # ---- producer side: any thread, must stay cheap ----------------------------------------

    def put_start(self, run_id: str, row: dict[str, Any]) -> None:
        """Buffer a run's `running` row (skipped, not blocking, when the buffer is full)."""
        log_burst = False
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self._dropped_starts += 1
                self._burst_starts += 1
                log_burst = self._begin_burst()
            else:
                self._pending[run_id] = (row, False)
        if log_burst:
            self._log_burst_start()
        if not self._wake.is_set():
            self._wake.set()

    def put_final(self, run_id: str, row: dict[str, Any]) -> None:
        """Buffer a finished run's complete row (also used for missed and skipped runs)."""
        log_burst = False
        with self._lock:
            if (
                run_id in self._pending
                or run_id in self._open  # its `running` row is written: bounded by concurrency
                or len(self._pending) < self.max_pending
            ):
                self._pending[run_id] = (row, True)
            else:
                self._dropped_rows += 1
                self._burst_rows += 1
                log_burst = self._begin_burst()
        if log_burst:
            self._log_burst_start()
        if not self._wake.is_set():
            self._wake.set()

    def _begin_burst(self) -> bool:
        if self._in_burst:
            return False
        self._in_burst = True
        self._bursts += 1
        return True

    def _log_burst_start(self) -> None:
        log.warning(
            "history buffer full (%d rows waiting for %s): dropping new rows until the "
            "database catches up",
            self.max_pending,
            self._describe,
        )

    # ---- control ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._stop_event.clear()
            self._thread = threading.Thread(
                target=self._main, name="jobstore-exporter-history", daemon=True
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_soon(self, task: chores.Task) -> None:
        task.requested = True
        task.next_due = 0.0
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row buffered before the call is written and due tasks have run."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flush_seq += 1
            target = self._flush_seq
        self._wake.set()
        with self._progress:
            while self._done_seq < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    return False
                self._progress.wait(min(remaining, 0.5))
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Flush (for at most `timeout` seconds), then end the thread. True if nothing was lost."""
        flushed = self.flush(timeout) if self.running else not self._pending
        with self._lock:
            self._stopping = True
            left = len(self._pending) + len(self._inflight or ())
        self._stop_event.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.5, min(timeout, 2.0)))
        if left:
            log.warning(
                "history writer stopped with %d rows not written to %s", left, self._describe
            )
        return flushed and not left

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                written=self._written,
                pending=len(self._pending) + len(self._inflight or ()),
                dropped_rows=self._dropped_rows,
                dropped_starts=self._dropped_starts,
                overflow_bursts=self._bursts,
                rejected=self._rejected,
                write_errors=self._outage.errors,
            )

    # ---- the thread ------------------------------------------------------------------------

    def _main(self) -> None:
        backoff = self.retry_initial
        while True:
            with self._lock:
                seq = self._flush_seq
                if self._stopping:
                    return
            if self._pass():
                backoff = self.retry_initial
                # Every row buffered before this pass began is written and due tasks ran.
                with self._progress:
                    self._done_seq = max(self._done_seq, seq)
                    self._progress.notify_all()
                    more = bool(self._pending)
                if more:
                    continue
                self._wake.wait(chores.until_next(self.tasks))
                self._wake.clear()
            else:
                # New rows must not cut the backoff short; only stop() does.
                self._stop_event.wait(backoff * (0.8 + 0.4 * random.random()))
                backoff = min(backoff * 2, self.retry_max)

    def _pass(self) -> bool:
        """Startup if still due, then all buffered rows, then due tasks. False on a failure."""
        if not self._started_up:
            try:
                assert self._startup is not None
                self._startup()
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                self._failed("preparing the history tables", exc)
                return False
            self._started_up = True
        if not self._drain():
            return False
        self._outage.recovered()
        chores.run_due(self.tasks, self.engine, self._describe)
        return True

    def _drain(self) -> bool:
        first = True
        while True:
            if not first:
                time.sleep(STATEMENT_PAUSE)  # between batches of a backlog: hand over the GIL
            first = False
            with self._lock:
                if self._inflight is None:
                    if not self._pending:
                        return True
                    self._inflight = take(self._pending, self._open, self.batch_size)
                batch = self._inflight
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - classified below
                if is_transient(exc):
                    self._failed(f"writing {len(batch)} history rows", exc)
                    if self._outage.in_row % 3 == 0:
                        self._try_repair()
                    return False
                self._try_repair()
                if not self._write_each(batch, exc):
                    return False
            with self._progress:
                self._written += len(batch)
                self._inflight = None
                self._progress.notify_all()
                if self._in_burst and len(self._pending) <= self.max_pending // 2:
                    self._in_burst = False
                    rows, starts = self._burst_rows, self._burst_starts
                    self._burst_rows = self._burst_starts = 0
                else:
                    rows = starts = -1
            if rows >= 0:
                log.warning(
                    "history buffer overflow over: %d finished runs and %d running-row inserts "
                    "were dropped",
                    rows,
                    starts,
                )

    def _write(self, batch: list[Item]) -> None:
        with self.engine.begin() as conn:
            for index, (statement, chunk) in enumerate(
                statements(self._insert, self._update, batch)
            ):
                if index:
                    time.sleep(STATEMENT_PAUSE)
                self._execute(conn, statement, chunk)

    def _execute(self, conn: sa.Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
        conn.execute(statement, rows)

    def _write_each(self, batch: list[Item], first: Exception) -> bool:
        """After a non-transient error: one row per transaction, dropping the ones refused."""
        log.warning(
            "history batch refused by %s (%s); writing its %d rows one by one",
            self._describe,
            describe_error(first, self.engine),
            len(batch),
        )
        while batch:
            item = batch[0]
            try:
                self._write([item])
            except Exception as exc:  # noqa: BLE001
                if is_transient(exc):
                    self._failed("writing history rows", exc)
                    return False
                log.warning(
                    "dropping history row for job %r (status %s): %s",
                    item[2].get("job_id"),
                    item[2].get("status"),
                    describe_error(exc, self.engine),
                )
                with self._lock:
                    self._rejected += 1
                    if item[0] == INSERT and not item[3]:
                        self._open.discard(item[1])  # its final row must be an insert then
            else:
                with self._lock:
                    self._written += 1
            batch.pop(0)
        return True

    def _try_repair(self) -> None:
        if self._repair is None:
            return
        with contextlib.suppress(Exception):  # the write retry reports the real problem
            self._repair()

    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self._outage.failed(what, exc, len(self._pending) + len(self._inflight or ()))
