"""The execution-history source: incremental reads of ``job_execution``.

A poll must cost the same at a thousand rows and at ten million, and counters must stay exact
while Aegis prunes to 100 rows per job and runs finish out of order. So the table is never
re-scanned; each poll reads:

1. rows above the highest id seen (``id > cursor``, in bounded batches);
2. the rows still open: runs seen ``running``, and ids below the cursor that were missing when
   the cursor passed them (another transaction committed them later; PostgreSQL sequences do
   not commit in order), kept for :data:`GAP_TTL` seconds.

A row is counted once, when it is first seen finished. Counters start at zero when the exporter
starts and count every run that finished after that second, including runs that finished before
the first successful read of the table (the database was down, or the table did not exist yet:
the kit creates it when the scheduler starts, often a moment after the exporter). Rows that
finished earlier set the ``last_*`` gauges but are not counted, so a restarted exporter shows a
counter reset (which ``rate()`` handles). When the table was seen missing, every row it holds
once it appears was written since, and all of them are counted, whatever the writer's clock says.

The first poll reads what those gauges need (per-job latest rows and open runs) and counts the
rows that finished since the start by walking id windows down from the newest row, until a
window holds only older runs (at most ``MAX_BATCHES_PER_POLL`` windows). A run that started
before the exporter and ended before its first read, with many newer runs in between, is the
one case left uncounted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from exporter.shared.tables import history_columns
from exporter.sidecar.config import StoreConfig
from exporter.sidecar.snapshot import JobRuns
from exporter.sidecar.sources.history_rows import FINISHED, InvalidRow, Run, int_id, parse_row
from exporter.sidecar.sources.history_tally import JobTally

log = logging.getLogger(__name__)

BATCH = 5000
MAX_BATCHES_PER_POLL = 40
GAP_TTL = 600.0
MAX_GAPS = 10_000
MAX_GAP_RUN = 1_000  # a longer hole is a sequence jump, not transactions in flight

_COLUMNS = (
    "id",
    "job_id",
    "scheduled_run_time",
    "started_at",
    "finished_at",
    "duration_ms",
    "status",
    "error_message",
)
_STATUS = _COLUMNS.index("status")


@dataclass(frozen=True, slots=True)
class HistoryRead:
    runs: tuple[JobRuns, ...]
    invalid_rows: Mapping[str, int]  # by reason, since the exporter started


class HistorySource:
    """Reads one store's history table incrementally."""

    def __init__(self, store: StoreConfig) -> None:
        self.store = store
        self.table = history_columns(store.history_table, store.schema)
        self._cursor: int | None = None
        self._open: dict[int, Run] = {}  # running rows, by id
        self._gaps: dict[int, float] = {}  # missing id -> when first missed
        self._jobs: dict[str, JobTally] = {}
        self._invalid: dict[str, int] = {}
        self._invalid_seen: set[int] = set()
        # What the last poll published, until a row is applied or an open run goes: a steady
        # poll hands out the same tuple without a pass over every job with history.
        self._published: tuple[JobRuns, ...] | None = None
        # Runs that finished from this second on are counted, even before the first read.
        self.counting_since = float(math.floor(time.time()))
        self.saw_table_missing = False

    # -- reading --------------------------------------------------------------------------

    def read(self, connection: sa.Connection, now: float | None = None) -> HistoryRead:
        now = time.time() if now is None else now
        if self._cursor is None:
            self._published = None
            try:
                self._bootstrap(connection)
            except sa.exc.DBAPIError:
                if not self.saw_table_missing and not self._table_exists(connection):
                    self.saw_table_missing = True
                raise
        else:
            self._recheck(connection, now)
            self._read_new(connection, now, count=True)
        return HistoryRead(self._publish(), MappingProxyType(dict(self._invalid)))

    def _table_exists(self, connection: sa.Connection) -> bool:
        try:
            return sa.inspect(connection).has_table(self.store.history_table, self.store.schema)
        except sa.exc.DBAPIError:
            return True  # cannot tell: assume it is there (counting only from the start)

    def _select(self) -> sa.Select[Any]:
        return sa.select(*(self.table.c[name] for name in _COLUMNS))

    def _bootstrap(self, connection: sa.Connection) -> None:
        """First poll: latest finished rows per job and open runs; nothing counted but the
        runs that ended since counting started.

        The reader runs in autocommit, so each statement below sees the table as of its own
        moment, and the writer commits in between. Two rules keep a run from being counted
        twice across those moments:

        * every statement stops at ``top``, the highest id when the first one ran: rows above
          it are the next poll's, read once as new rows (a run seen ``running`` above it would
          otherwise be counted when it finishes, and again as a new row);
        * a run seen ``running`` by any statement is open and counted when it is seen finished
          (by a later statement, or a later poll), never as one of the recent runs; a row seen
          finished is finished, whatever an earlier statement said. Before, a run that ended
          between the read of open runs and the read of recent runs was counted as recent and
          again when its open run was seen to end.
        """
        t = self.table
        cursor = connection.execute(sa.select(sa.func.max(t.c.id))).scalar()
        top = int(cursor) if cursor is not None else 0
        upto = t.c.id <= top
        latest_ids = (
            sa.select(sa.func.max(t.c.id))
            .where(upto, t.c.status.in_(("success", "failed")))
            .group_by(t.c.job_id, t.c.status)
        )
        rows = connection.execute(self._select().where(t.c.id.in_(latest_ids))).all()
        running = connection.execute(self._select().where(upto, t.c.status == "running")).all()
        latest = connection.execute(
            sa.select(sa.func.max(t.c.id))
            .where(upto, t.c.started_at.is_not(None))
            .group_by(t.c.job_id)
        ).all()
        started = connection.execute(self._select().where(t.c.id.in_([r[0] for r in latest]))).all()
        # Consecutive failures: failed rows after each job's latest success.
        after = sa.select(t.c.job_id, sa.func.max(t.c.id).label("ok")).where(
            upto, t.c.status == "success"
        )
        after_success = after.group_by(t.c.job_id).subquery()
        failures = connection.execute(
            self._select()
            .select_from(t.outerjoin(after_success, after_success.c.job_id == t.c.job_id))
            .where(upto, t.c.status == "failed")
            .where(sa.or_(after_success.c.ok.is_(None), t.c.id > after_success.c.ok))
        ).all()
        versions = [*running, *rows, *failures, *started]
        open_at_read = {row[0]: row for row in versions if row[_STATUS] == "running"}
        recent, ended = self._recent_runs(connection, top, open_at_read.keys())  # last query
        last_seen: dict[Any, Any] = {}
        for row in [*versions, *ended.values()]:
            if row[0] not in last_seen or last_seen[row[0]][_STATUS] == "running":
                last_seen[row[0]] = row  # a finished version beats a running one
        now = time.time()
        # A run seen running is open (its end is counted, once, like any open run's), then
        # the rows as last seen: those open runs seen finished by a later statement are counted
        # here, every other row only sets the gauges.
        for _row_id, row in sorted(open_at_read.items(), key=lambda item: str(item[0])):
            self._apply(row, count=False, now=now)
        for _row_id, row in sorted(last_seen.items(), key=lambda item: str(item[0])):
            if row[_STATUS] != "running":
                self._apply(row, count=False, now=now)
        for run in recent:
            if run.id not in open_at_read:
                self._jobs.setdefault(run.job_id, JobTally()).count(run)
        # Only now: a bootstrap that failed half-way is simply tried again next poll.
        self._cursor = top

    def _recent_runs(
        self, connection: sa.Connection, top: int, seen_running: Collection[Any]
    ) -> tuple[list[Run], dict[Any, Any]]:
        """Finished rows at or below ``top`` that ended since counting started (all of them
        when the table was seen missing), newest id windows first; and, by id, the rows among
        ``seen_running`` found finished here (those runs ended a moment ago)."""
        t = self.table
        found: list[Run] = []
        finished: dict[Any, Any] = {}
        upper = top
        for _ in range(MAX_BATCHES_PER_POLL):
            if upper <= 0:
                break
            query = self._select().where(
                t.c.id > upper - BATCH, t.c.id <= upper, t.c.status.in_(FINISHED)
            )
            rows = connection.execute(query).all()
            before = len(found)
            for row in rows:
                try:
                    run = parse_row(row)
                except InvalidRow:
                    continue  # never counted; reported if it is read again as a new row
                if row[0] in seen_running:
                    finished[row[0]] = row
                end = run.finished if run.finished is not None else run.started
                if self.saw_table_missing or (end is not None and end >= self.counting_since):
                    found.append(run)
            if rows and len(found) == before and not self.saw_table_missing:
                break  # a window of older runs only: the exporter's start is behind us
            upper -= BATCH
        return found, finished

    def _read_new(self, connection: sa.Connection, now: float, *, count: bool) -> None:
        """Rows above the cursor, in bounded id windows.

        ``id > cursor AND id <= cursor + BATCH`` rather than ``ORDER BY id LIMIT``: with stale
        planner statistics (a bulk load, autovacuum not run yet) PostgreSQL plans the latter as
        a sequential scan and sort of the whole table; a bounded range always uses the key.
        """
        assert self._cursor is not None
        t = self.table
        highest = connection.execute(sa.select(sa.func.max(t.c.id))).scalar()
        top = int(highest) if highest is not None else 0
        if top < self._cursor:
            # The newest rows were deleted; a table without AUTOINCREMENT (SQLite) will hand out
            # their ids again, so read from what is there now. Ids above the new cursor are
            # read as new rows from here on: a gap or open run among them (gone, or not there
            # yet) must not be re-checked as well, or a row reusing its id counts twice.
            self._cursor = top
            self._gaps = {i: seen for i, seen in self._gaps.items() if i <= top}
            if any(i > top for i in self._open):
                self._open = {i: run for i, run in self._open.items() if i <= top}
                self._published = None
        expected = self._cursor + 1
        for _ in range(MAX_BATCHES_PER_POLL):
            if self._cursor >= top:
                return
            upper = min(top, self._cursor + BATCH)
            query = self._select().where(t.c.id > self._cursor, t.c.id <= upper)
            rows = sorted(connection.execute(query).all(), key=lambda row: row[0])
            if not rows:
                # A jump in the sequence: skip to the next existing id instead of walking.
                following = connection.execute(
                    sa.select(sa.func.min(t.c.id)).where(t.c.id > upper)
                ).scalar()
                self._cursor = int(following) - 1 if following is not None else top
                expected = self._cursor + 1
                continue
            for row in rows:
                row_id = int_id(row[0])
                if row_id is None:
                    continue
                if expected < row_id <= expected + MAX_GAP_RUN:
                    # Ids below a committed one may belong to transactions still open.
                    for missing in range(expected, row_id):
                        if len(self._gaps) < MAX_GAPS:
                            self._gaps.setdefault(missing, now)
                expected = row_id + 1
                self._apply(row, count=count, now=now)
            self._cursor = upper
            if expected <= upper < expected + MAX_GAP_RUN:
                for missing in range(expected, upper + 1):
                    if len(self._gaps) < MAX_GAPS:
                        self._gaps.setdefault(missing, now)
            expected = upper + 1

    def _recheck(self, connection: sa.Connection, now: float) -> None:
        """Re-read open runs and late-committed ids; forget gaps older than GAP_TTL."""
        self._gaps = {i: seen for i, seen in self._gaps.items() if now - seen < GAP_TTL}
        ids = sorted({*self._open, *self._gaps})
        found: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in connection.execute(self._select().where(self.table.c.id.in_(chunk))):
                row_id = int_id(row[0])
                if row_id is None:
                    continue
                found.add(row_id)
                self._gaps.pop(row_id, None)
                self._apply(row, count=True, now=now)
        for row_id in [i for i in self._open if i not in found]:
            del self._open[row_id]  # pruned or deleted while running: nothing to count
            self._published = None

    # -- applying rows --------------------------------------------------------------------

    def _apply(self, row: Any, *, count: bool, now: float) -> None:
        self._published = None
        try:
            run = parse_row(row)
        except InvalidRow as exc:
            row_id = int_id(row[0])
            if row_id is not None and row_id in self._invalid_seen:
                return
            if row_id is not None:
                self._invalid_seen.add(row_id)
            self._invalid[exc.reason] = self._invalid.get(exc.reason, 0) + 1
            log.warning(
                "jobstore %s: skipped history row id=%s: %s",
                self.store.name,
                row[0] if isinstance(row[0], int) else "?",
                exc.reason,
            )
            return
        job = self._jobs.setdefault(run.job_id, JobTally())
        if run.status == "running":
            self._open[run.id] = run
            job.note_start(run)
            return
        was_open = self._open.pop(run.id, None) is not None
        if count or was_open:
            job.count(run)
        job.note_start(run)
        if run.status in ("success", "failed"):
            job.note_finish(run)

    # -- publishing -----------------------------------------------------------------------

    def _publish(self) -> tuple[JobRuns, ...]:
        if self._published is not None:
            return self._published
        running: dict[str, list[float | None]] = {}
        for run in self._open.values():
            running.setdefault(run.job_id, []).append(run.started)
        result = []
        for job_id, job in sorted(self._jobs.items()):
            starts = running.get(job_id, [])
            known = [s for s in starts if s is not None]
            since = min(known) if known else None
            result.append(job.freeze(job_id, running=len(starts), running_since=since))
        self._published = tuple(result)
        return self._published
