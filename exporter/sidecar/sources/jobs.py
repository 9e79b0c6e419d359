"""The job store source: at most one short SELECT of ``apscheduler_jobs`` per poll.

Reads the three columns directly with SQLAlchemy Core and never goes through
``SQLAlchemyJobStore``, whose ``get_all_jobs()`` deletes every row it cannot restore. The parts,
one module each: the SELECT of ids, next run times and digests, the bytes of changed rows by id
and the table's one-row fingerprint (:mod:`.job_select`); SQLite's commit count
(:mod:`.store_version`); the decode cache of rows (:mod:`.job_entries`); the fire-time walk of
the rows that fall due (:mod:`.job_fire_times`). This module ties them: while the commit count
or the fingerprint stays the same, no SELECT runs at all; otherwise rows are compared as the
driver's tuples with C-level list and set operations, so unchanged rows cost no Python, and
only new or changed rows are decoded.

One bad row costs that row, never the read: a ``job_state`` larger than the decoder accepts is
not even fetched (the SELECT returns its length instead), an id that is not valid UTF-8 (SQLite
keeps any bytes) marks its row undecodable, and text no encoder accepts is replaced.
"""

from __future__ import annotations

import itertools
import operator
import time
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from exporter.sidecar.config import StoreConfig
from exporter.sidecar.snapshot import JobView
from exporter.sidecar.sources.job_entries import CachedRow, RowDecoder
from exporter.sidecar.sources.job_fire_times import FIRE_TIME_BUDGET, FireTimes
from exporter.sidecar.sources.job_select import JobTable, Row
from exporter.sidecar.sources.store_version import DataVersion, data_version
from exporter.sidecar.text import decode_id


@dataclass(frozen=True, slots=True)
class JobsRead:
    """What one poll of the job store produced."""

    jobs: tuple[JobView, ...]
    undecodable: int


class JobStoreSource:
    """Reads one store's job table; remembers decoded rows between polls.

    Rows are compared as the driver's own tuples, with set and list operations that run in C:
    a row that did not change since the last poll costs no Python bytecode at all, and a poll
    in which nothing changed (and no fire time is due) hands out the previous result as it was.
    """

    def __init__(self, store: StoreConfig) -> None:
        self.store = store
        self._table = JobTable(store)
        self.table = self._table.table
        self._forget()
        self._decoder = RowDecoder(store)
        self._version: DataVersion | None = None
        self._versioned = False  # whether the version was asked for (only SQLite has one)
        self._fingerprints = True  # whether the server computes the table's fingerprint

    def _forget(self) -> None:
        """Start from nothing (a first poll, or after a read that failed half-way)."""
        self._rows: list[Row] = []  # the last SELECT's rows, as the driver gave them (see _fresh)
        self._by_raw: dict[Any, CachedRow] = {}  # by the id as the driver gives it
        self._position: dict[str, int] = {}  # job id -> its index in self._last.jobs
        self._last = JobsRead((), 0)
        self._fire = FireTimes(self.store)
        self._read_at: Hashable | None = None  # the database's version at the last full read
        self._steady = False  # whether the last SELECT found every row as it was

    def read(self, connection: sa.Connection, now: float | None = None) -> JobsRead:
        """Run the SELECT, decode what changed, and describe every job.

        The SELECT itself is skipped when the table's version (:meth:`_version_of`) is the one
        of the last full read: with no fire time due the result is the last one, and fire times
        that fell due are worked out from the rows of that read."""
        now = time.time() if now is None else now
        version = self._version_of(connection)
        rows: list[Row]
        fresh: Collection[Row]
        if version is not None and version == self._read_at:
            if not self._fire.any_due(now):
                return self._last
            rows, fresh = self._rows, ()  # the table is as it was: so are its rows
        else:
            self._read_at = None  # until this read succeeds
            fresh, rows = _fresh(self._table.select(connection), self._rows)
            self._steady = not fresh and len(rows) == len(self._rows)
            if self._steady and not self._fire.any_due(now):
                self._rows, self._read_at = rows, version
                return self._last  # nothing changed and no fire time is due: the same objects
        try:
            read = self._update(connection, rows, fresh, now)
            self._read_at = version
            return read
        except BaseException:
            # Entries may be half-updated: compare every row again next time (their decoded
            # state is kept), and rebuild the list of jobs from them.
            self._rows, self._position, self._read_at = [], {}, None
            raise

    def _version_of(self, connection: sa.Connection) -> Hashable | None:
        """A value that changes whenever the table may have, asked before the SELECT (a write
        in between shows at the next poll), or None when the SELECT must run anyway.

        SQLite: its commit count, on a connection kept for it. PostgreSQL and MySQL/MariaDB: a
        fingerprint of the table, one row computed by the server, asked only while the store
        stays the same (the last SELECT found nothing new): a store that changes between every
        two polls would pay it beside the SELECT each time."""
        if not self._versioned:
            self._version, self._versioned = data_version(connection), True
        if self._version is not None:
            return self._version.current()
        if not self._steady or not self._fingerprints:
            return None
        try:
            return self._table.fingerprint(connection)
        except sa.exc.ProgrammingError:
            # Not a plain table (a view has no xmin), or a server without these functions:
            # the SELECT alone from now on, which says what is wrong if anything is. (A lost
            # connection or a timeout is the poll's failure, reported as the SELECT's would be.)
            self._fingerprints = False
        return None

    def close(self) -> None:
        """Let go of the connection kept for the database's version (the poller stops)."""
        if self._version is not None:
            self._version.close()

    def _update(
        self, connection: sa.Connection, rows: list[Row], fresh: Collection[Row], now: float
    ) -> JobsRead:
        by_raw, fire = self._by_raw, self._fire
        added = [row for row in fresh if row[0] not in by_raw]
        gone: set[Any] = set()
        if len(by_raw) + len(added) != len(rows):  # some row left (or an id came twice)
            gone = by_raw.keys() - set(map(_FIRST, rows))
        due = fire.pop_due(by_raw, now)
        fetched = self._states_needed(connection, fresh, due, now, len(rows))
        budget_ends = time.monotonic() + FIRE_TIME_BUDGET
        changed: dict[Any, CachedRow] = {}
        for raw_id, next_run_time, size, signal in fresh:
            entry = by_raw.get(raw_id)
            due.pop(raw_id, None)
            key: object = signal if signal is not None else ("length", size)
            trigger = None
            if entry is None or entry.state != key:
                job_id, valid_id = decode_id(raw_id)
                state = fetched.get(raw_id)
                if signal is not None and valid_id and state is None:
                    # Changed, then deleted before its bytes were read: gone.
                    if entry is not None:
                        gone.add(raw_id)
                    continue
                entry, trigger = self._decoder.entry(job_id, valid_id, state, size, key)
                by_raw[raw_id] = entry
                gone.discard(raw_id)
            next_run = _as_float(next_run_time)
            if next_run != entry.view.next_run_time:
                entry.view = replace(entry.view, next_run_time=next_run)
            changed[raw_id] = entry
            if entry.trigger_key is not None and now >= entry.previous_until:
                due[raw_id] = entry
                if trigger is not None:
                    fire.work_out(raw_id, entry, trigger, None, now, budget_ends)
        fire.work_out_due(due, by_raw, gone, fetched, now, budget_ends, changed)
        for raw_id in gone:
            del by_raw[raw_id]
        self._rows = rows
        self._last = self._publish(changed.values(), bool(added or gone))
        if len(self._decoder.words) > 2 * len(by_raw) + 1000:  # forget schedules no job has
            live = {entry.trigger_key for entry in by_raw.values()}
            self._decoder.keep_only(live)
            fire.keep_only(live)
        fire.trim(by_raw)
        return self._last

    def _publish(self, changed: Iterable[CachedRow], moved: bool) -> JobsRead:
        """The jobs sorted by id: the last tuple with the changed views put in their places,
        or sorted again when jobs came or went."""
        position = self._position
        if moved or not position:
            jobs = sorted([entry.view for entry in self._by_raw.values()], key=_ID)
            self._position = {job.id: i for i, job in enumerate(jobs)}
            return JobsRead(tuple(jobs), len(jobs) - sum(map(_DECODED, jobs)))
        jobs = list(self._last.jobs)
        undecodable = self._last.undecodable
        for entry in changed:
            i = position[entry.view.id]
            undecodable += jobs[i].decoded - entry.view.decoded
            jobs[i] = entry.view
        return JobsRead(tuple(jobs), undecodable)

    def _states_needed(
        self,
        connection: sa.Connection,
        fresh: Iterable[Row],
        due: dict[Any, CachedRow],
        now: float,
        total: int,
    ) -> dict[Any, bytes]:
        """``job_state`` of the rows whose digest changed, and of unchanged rows whose fire times
        must be worked out again (once per trigger, about once per run of it), by id."""
        by_raw = self._by_raw
        wanted = []
        for raw_id, _next_run, _size, digest in fresh:
            if digest is None:
                continue  # too large to fetch (or NULL): judged by its length alone
            cached = by_raw.get(raw_id)
            if cached is None or cached.state != digest:
                wanted.append(raw_id)
        wanted += self._fire.rows_to_fetch(due, now)
        return self._table.states(connection, wanted, total)


def _fresh(rows: list[Row], old: list[Row]) -> tuple[Collection[Row], list[Row]]:
    """The rows new or changed since the last poll, by C-level comparisons: row by row while the
    order holds (the usual poll), as sets when rows came, went or moved; and the rows to keep.

    While the order holds, the rows kept are the old tuples wherever a row is unchanged (the very
    list when none changed): their ids and digests are the objects the decode cache holds, so a
    job's id and digest are held once, not once more for each SELECT since (at 10k jobs, 1.3 MB).
    """
    if len(rows) == len(old):
        changed = list(itertools.compress(range(len(rows)), map(operator.ne, rows, old)))
        if not changed:
            return (), old
        if len(changed) <= len(rows) // 8:
            kept = old.copy()
            for i in changed:
                kept[i] = rows[i]
            return [rows[i] for i in changed], kept
    found = set(rows)
    found.difference_update(old)
    return found, rows


_FIRST = operator.itemgetter(0)
_ID = operator.attrgetter("id")
_DECODED = operator.attrgetter("decoded")


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
