"""The job store source: one short SELECT of ``apscheduler_jobs`` per poll.

Reads the three columns directly with SQLAlchemy Core and never goes through
``SQLAlchemyJobStore``, whose ``get_all_jobs()`` deletes every row it cannot restore. The SELECT
returns each row's id, next run time, the length of ``job_state`` and a digest of it, computed by
the database (``md5`` on PostgreSQL and MySQL/MariaDB; on SQLite a hash function registered on
the connection); the bytes of the few rows whose digest changed are read by id afterwards and
decoded by the restricted unpickler. Rows are compared as the driver's tuples with C-level list
and set operations, so a steady store costs one SELECT and no Python per unchanged row.

One bad row costs that row, never the read: a ``job_state`` larger than the decoder accepts is
not even fetched (the SELECT returns its length instead), an id that is not valid UTF-8 (SQLite
keeps any bytes) marks its row undecodable, and text no encoder accepts is replaced.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import operator
import sys
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from exporter.sidecar.config import StoreConfig
from exporter.sidecar.db import qualified_table
from exporter.sidecar.decode import MAX_JOB_STATE_BYTES, UndecodableJob, decode_job_state
from exporter.sidecar.schedules.fire_times import next_fire_time, previous_fire_time, trigger_kind
from exporter.sidecar.schedules.schedule import describe
from exporter.sidecar.schedules.walk_budget import ROW_BUDGET, WalkBudgetExceeded, walk_budget
from exporter.sidecar.snapshot import JobView
from exporter.sidecar.text import capped, decode_id, encodable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobsRead:
    """What one poll of the job store produced."""

    jobs: tuple[JobView, ...]
    undecodable: int


@dataclass(slots=True)
class _Cached:
    """What we know of one row, kept while its change signal stays the same.

    ``view`` is the last JobView published for the row: a steady poll hands out the very same
    object. ``previous`` (the latest fire time the trigger implied) only changes when the clock
    passes the trigger's next fire time, ``previous_until``, so it is recomputed about once per
    run instead of on every poll (cron arithmetic costs around a millisecond per job).
    """

    state: object  # the row's change signal (a digest of job_state), or ("length", size)
    view: JobView
    trigger_key: str | None = None  # None: no trigger to compute fire times from
    previous_until: float = -math.inf
    gave_up: bool = False  # the fire-time walk ran out of its budget (logged once)


Row = tuple[Any, Any, Any, Any]
"""One row of the SELECT as the driver gives it: id, next_run_time, length and change signal."""


class JobStoreSource:
    """Reads one store's job table; remembers decoded rows between polls.

    Rows are compared as the driver's own tuples, with set and list operations that run in C:
    a row that did not change since the last poll costs no Python bytecode at all, and a poll
    in which nothing changed (and no fire time is due) hands out the previous result as it was.
    """

    def __init__(self, store: StoreConfig) -> None:
        self.store = store
        self.table = qualified_table(
            store.jobs_table,
            store.schema,
            [
                sa.Column("id", sa.Unicode(191)),
                sa.Column("next_run_time", sa.Float),
                sa.Column("job_state", sa.LargeBinary),
            ],
        )
        self._queries: dict[str, str] = {}
        self._forget()
        self._words: dict[str, tuple[str, str]] = {}  # trigger key -> (kind, schedule text)

    def _forget(self) -> None:
        """Start from nothing (a first poll, or after a read that failed half-way)."""
        self._rows: list[Row] = []  # the last SELECT's rows, as the driver gave them
        self._by_raw: dict[Any, _Cached] = {}  # by the id as the driver gives it
        self._position: dict[str, int] = {}  # job id -> its index in self._last.jobs
        self._last = JobsRead((), 0)
        # Fire times by trigger: stores hold many jobs with the same schedule, and cron
        # arithmetic is the dearest part of a cold poll.
        self._fire_times: dict[str, tuple[float | None, float]] = {}
        # (previous_until, sequence, raw id): the rows whose fire times are due to be worked
        # out again, soonest first; entries of replaced or gone rows are skipped when popped.
        self._due: list[tuple[float, int, Any]] = []
        self._pushed = 0

    def read(self, connection: sa.Connection, now: float | None = None) -> JobsRead:
        """Run the SELECT, decode what changed, and describe every job."""
        rows = self._select(connection)
        now = time.time() if now is None else now
        fresh = _fresh(rows, self._rows)
        if (
            not fresh
            and len(rows) == len(self._rows)
            and not (self._due and self._due[0][0] <= now)
        ):
            self._rows = rows
            return self._last  # nothing changed and no fire time is due: the same objects
        try:
            return self._update(connection, rows, fresh, now)
        except BaseException:
            # Entries may be half-updated: compare every row again next time (their decoded
            # state is kept), and rebuild the list of jobs from them.
            self._rows, self._position = [], {}
            raise

    def _update(
        self, connection: sa.Connection, rows: list[Row], fresh: Collection[Row], now: float
    ) -> JobsRead:
        by_raw = self._by_raw
        added = [row for row in fresh if row[0] not in by_raw]
        gone: set[Any] = set()
        if len(by_raw) + len(added) != len(rows):  # some row left (or an id came twice)
            gone = by_raw.keys() - set(map(_FIRST, rows))
        due = self._pop_due(now)
        fetched = self._states_needed(connection, fresh, due, now, len(rows))
        budget_ends = time.monotonic() + FIRE_TIME_BUDGET
        changed: dict[Any, _Cached] = {}
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
                entry, trigger = self._entry(job_id, valid_id, state, size, key)
                by_raw[raw_id] = entry
                gone.discard(raw_id)
            next_run = _as_float(next_run_time)
            if next_run != entry.view.next_run_time:
                entry.view = replace(entry.view, next_run_time=next_run)
            changed[raw_id] = entry
            if entry.trigger_key is not None and now >= entry.previous_until:
                due[raw_id] = entry
                if trigger is not None:
                    self._fire_time(raw_id, entry, trigger, None, now, budget_ends)
        # Fire times: the rows fetched for it first, then those sharing their triggers.
        waiting = []
        for raw_id, entry in due.items():
            if raw_id in gone or by_raw.get(raw_id) is not entry:
                continue
            if now < entry.previous_until:
                pass  # worked out above
            elif not self._fire_time(raw_id, entry, None, fetched.get(raw_id), now, budget_ends):
                waiting.append((raw_id, entry))
                continue
            changed[raw_id] = entry
        for raw_id, entry in waiting:
            self._fire_time(raw_id, entry, None, None, now, budget_ends, last_try=True)
            changed[raw_id] = entry
        for raw_id in gone:
            del by_raw[raw_id]
        self._rows = rows
        self._last = self._publish(changed.values(), bool(added or gone))
        if len(self._words) > 2 * len(by_raw) + 1000:  # forget schedules no job has any more
            live = {entry.trigger_key for entry in by_raw.values()}
            self._words = {k: v for k, v in self._words.items() if k in live}
            self._fire_times = {k: v for k, v in self._fire_times.items() if k in live}
        if len(self._due) > 2 * len(by_raw) + 1000:
            self._due = [
                (entry.previous_until, 0, raw_id)
                for raw_id, entry in by_raw.items()
                if entry.trigger_key is not None and entry.previous_until < math.inf
            ]
            heapq.heapify(self._due)
        return self._last

    def _publish(self, changed: Iterable[_Cached], moved: bool) -> JobsRead:
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

    def _pop_due(self, now: float) -> dict[Any, _Cached]:
        """Rows whose fire times must be worked out again, by id (in the order they fell due)."""
        heap, by_raw = self._due, self._by_raw
        due: dict[Any, _Cached] = {}
        while heap and heap[0][0] <= now:
            until, _, raw_id = heapq.heappop(heap)
            entry = by_raw.get(raw_id)
            if entry is not None and entry.previous_until == until:
                due[raw_id] = entry
        return due

    def _fire_time(
        self,
        raw_id: Any,
        entry: _Cached,
        trigger: Any,
        state: bytes | None,
        now: float,
        budget_ends: float,
        last_try: bool = False,
    ) -> bool:
        """Work out the job's latest fire time now, into its view; False if it could not be
        (over the poll's budget, or neither trigger nor bytes at hand: a later call may find it
        shared by another job of the same trigger, and ``last_try`` leaves it for a later poll).

        Shared with every job of the same trigger; worked out from the trigger, decoded from
        ``state`` if not given (triggers are not kept between polls: a cron trigger is ~4 KB,
        and decoding the row's bytes again costs far less than the arithmetic)."""
        key = entry.trigger_key
        assert key is not None
        known = self._fire_times.get(key)
        if known is not None and now < known[1]:
            previous, entry.previous_until = known
        elif time.monotonic() < budget_ends and (trigger is not None or state is not None):
            trigger = trigger if trigger is not None else _trigger_of(state)
            previous, entry.previous_until = self._walk(entry, trigger, now)
            if entry.previous_until > now:
                self._fire_times[key] = (previous, entry.previous_until)
        elif not last_try:
            return False
        else:
            previous = entry.view.previous_fire_time  # waits for a later poll
        if previous != entry.view.previous_fire_time:
            entry.view = replace(entry.view, previous_fire_time=previous)
        if entry.previous_until < math.inf:
            self._pushed += 1
            heapq.heappush(self._due, (entry.previous_until, self._pushed, raw_id))
        return True

    def _walk(self, entry: _Cached, trigger: Any, now: float) -> tuple[float | None, float]:
        """:func:`_previous_fire` within :data:`ROW_BUDGET`; past it, this job alone goes
        without its expected run time until :data:`WALK_RETRY` seconds later."""
        try:
            with walk_budget(ROW_BUDGET):
                result = _previous_fire(trigger, now)
            entry.gave_up = False  # a retry that fits is logged again should a later one not
            return result
        except WalkBudgetExceeded:
            if not entry.gave_up:
                entry.gave_up = True
                log.warning(
                    "jobstore %s: job %r: gave up working out its fire times after %.1f s (its "
                    "trigger is too costly to walk); it has no "
                    "apscheduler_job_expected_run_timestamp_seconds, retried every %.0f s",
                    self.store.name,
                    entry.view.id,
                    ROW_BUDGET,
                    WALK_RETRY,
                )
            return None, now + WALK_RETRY

    def _select(self, connection: sa.Connection) -> list[Row]:
        """The rows as the driver's plain tuples, fetched whole before any Python work on them
        (on SQLite a reader that lingers can stop the scheduler's writes)."""
        dialect = connection.dialect
        if dialect.name == "sqlite":
            # Registered on every read (cheap): the connection may be new, the engine anyone's.
            driver = connection.connection.driver_connection
            driver.create_function(SQLITE_HASH, 1, hash, deterministic=True)  # type: ignore[union-attr]
        sql = self._queries.get(dialect.name)
        if sql is None:
            sql = self._queries[dialect.name] = str(
                self._query_for(dialect.name).compile(
                    dialect=dialect, compile_kwargs={"literal_binds": True}
                )
            )
        result = connection.exec_driver_sql(sql)
        try:
            # The driver's tuples, not SQLAlchemy rows: equal rows compare equal in C.
            return list(result.cursor.fetchall())
        except dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc
        finally:
            result.close()

    def _query_for(self, dialect: str) -> sa.Select[Any]:
        """The SELECT: id, next run time, the length of ``job_state`` and a digest of it.

        A steady poll then moves ids, fire times and digests instead of every row's bytes: the
        bytes are read afterwards, by id, only for the rows that need them. PostgreSQL and
        MySQL/MariaDB compute ``md5(job_state)``; SQLite has no digest of its own, so the
        connection is given one (:data:`SQLITE_HASH`). Rows larger than the decoder accepts
        get no digest (they are judged by their length and never fetched). SQLite keeps
        whatever bytes an app wrote in a text column and its driver fails the whole read on
        invalid UTF-8, so there the id is read as bytes.
        """
        column = self.table.c
        size = sa.func.length(column.job_state)
        job_id: Any = column.id
        fits = size <= MAX_JOB_STATE_BYTES
        if dialect == "sqlite":
            job_id = sa.cast(job_id, sa.LargeBinary)
            digest = getattr(sa.func, SQLITE_HASH)(sa.cast(column.job_state, sa.LargeBinary))
        else:
            digest = sa.func.md5(column.job_state)
        digest = sa.case((fits, digest), else_=sa.null())
        # The length only where it matters (a row too large, or NULL): the rows are kept until
        # the next poll, and None costs nothing per row.
        length = sa.case((fits, sa.null()), else_=size)
        return sa.select(job_id, column.next_run_time, length, digest)

    def _states_needed(
        self,
        connection: sa.Connection,
        fresh: Iterable[Row],
        due: dict[Any, _Cached],
        now: float,
        total: int,
    ) -> dict[Any, bytes]:
        """``job_state`` of the rows whose digest changed, and of unchanged rows whose fire times
        must be worked out again (once per trigger, about once per run of it), by id."""
        by_raw, fire_times = self._by_raw, self._fire_times
        wanted = []
        for raw_id, _next_run, _size, digest in fresh:
            if digest is None:
                continue  # too large to fetch (or NULL): judged by its length alone
            cached = by_raw.get(raw_id)
            if cached is None or cached.state != digest:
                wanted.append(raw_id)
        walked: set[str] = set()
        for raw_id, cached in due.items():
            key = cached.trigger_key
            known = fire_times.get(key) if key is not None else None
            if key is not None and (known is None or now >= known[1]) and key not in walked:
                walked.add(key)  # one row per trigger: the others share its fire times
                wanted.append(raw_id)
        if not wanted:
            return {}
        if len(wanted) > max(FETCH_CHUNK, total // 4):
            return self._all_states(connection, wanted)  # a first poll: one SELECT, not many
        if connection.dialect.name == "sqlite":
            return self._sqlite_states(connection, wanted)
        states: dict[Any, bytes] = {}
        column = self.table.c
        for start in range(0, len(wanted), FETCH_CHUNK):
            chunk = wanted[start : start + FETCH_CHUNK]
            query = sa.select(column.id, column.job_state).where(column.id.in_(chunk))
            for raw_id, state in connection.execute(query):
                if state is not None:
                    states[raw_id] = bytes(state)  # never keep a driver's view
        return states

    def _all_states(self, connection: sa.Connection, wanted: list[Any]) -> dict[Any, bytes]:
        """The bytes of every row (up to the size the decoder accepts), kept for those wanted:
        fetched whole before any Python work on them."""
        column = self.table.c
        size = sa.func.length(column.job_state)
        job_id: Any = column.id
        state: Any = column.job_state
        if connection.dialect.name == "sqlite":
            job_id, state = sa.cast(job_id, sa.LargeBinary), sa.cast(state, sa.LargeBinary)
        query = sa.select(job_id, sa.case((size <= MAX_JOB_STATE_BYTES, state), else_=sa.null()))
        rows = connection.execute(query).all()
        keep = set(wanted)
        return {raw: bytes(value) for raw, value in rows if value is not None and raw in keep}

    def _sqlite_states(self, connection: sa.Connection, wanted: list[Any]) -> dict[Any, bytes]:
        """The bytes by id on SQLite, where ids are read as bytes: looked up by their text (the
        primary key's index), and those stored otherwise (as a BLOB) by their bytes."""
        column = self.table.c
        blob_id = sa.cast(column.id, sa.LargeBinary)
        state = sa.cast(column.job_state, sa.LargeBinary)
        texts = {}
        for raw_id in wanted:
            text, valid = decode_id(raw_id)
            if valid:  # an invalid id makes its row undecodable: its bytes are never needed
                texts[text] = raw_id
        states: dict[Any, bytes] = {}
        names = list(texts)
        for start in range(0, len(names), FETCH_CHUNK):
            query = sa.select(blob_id, state).where(
                column.id.in_(names[start : start + FETCH_CHUNK])
            )
            states.update(
                (raw, bytes(value)) for raw, value in connection.execute(query) if value is not None
            )
        missing = [raw_id for raw_id in texts.values() if raw_id not in states]
        for start in range(0, len(missing), FETCH_CHUNK):
            query = sa.select(blob_id, state).where(
                blob_id.in_(missing[start : start + FETCH_CHUNK])
            )
            states.update(
                (raw, bytes(value)) for raw, value in connection.execute(query) if value is not None
            )
        return states

    def _entry(
        self, job_id: str, valid_id: bool, state: object, size: object, key: object
    ) -> tuple[_Cached, Any]:
        """A new entry for a row whose bytes changed, and its decoded trigger."""
        try:
            if not valid_id:
                raise UndecodableJob("the job id is not valid UTF-8")
            if state is None and isinstance(size, int) and size > MAX_JOB_STATE_BYTES:
                raise UndecodableJob(
                    f"job_state is larger than {MAX_JOB_STATE_BYTES} bytes ({size} bytes)"
                )
            job = decode_job_state(state)  # type: ignore[arg-type]
        except UndecodableJob as exc:
            log.warning(
                "jobstore %s: job %r has a job_state that cannot be decoded safely (%s); "
                "it is counted in jobstore_exporter_undecodable_jobs",
                self.store.name,
                job_id,
                exc,
            )
            return _Cached(key, JobView(id=job_id, next_run_time=None, decoded=False)), None
        trigger_key = _trigger_key(job_id, job.trigger)
        words = self._words.get(trigger_key) if trigger_key is not None else None
        if words is None:  # the same schedule text for every job with an equal trigger
            words = (trigger_kind(job.trigger), describe(job.trigger))
            if trigger_key is not None:
                self._words[trigger_key] = words
        name, bad_name = encodable(job.name or "")
        func, bad_func = encodable(job.func or "")
        executor, bad_executor = encodable(job.executor)
        replaced = [
            field
            for field, bad in (("name", bad_name), ("func", bad_func), ("executor", bad_executor))
            if bad
        ]
        if replaced:
            log.warning(
                "jobstore %s: job %r has text that is not valid Unicode in %s; shown with U+FFFD "
                "and counted in jobstore_exporter_jobs_text_replaced",
                self.store.name,
                job_id,
                ", ".join(replaced),
            )
        view = JobView(
            id=job_id,
            next_run_time=None,
            decoded=True,
            # Interned: thousands of jobs share a function, an executor, often a name, and
            # each decoded row would otherwise hold copies of its own.
            name=sys.intern(capped(name)),
            func=sys.intern(func),
            executor=sys.intern(capped(executor)),
            trigger=words[0],
            schedule=words[1],
            misfire_grace_time=job.misfire_grace_time,
            text_replaced=bool(replaced),
        )
        return _Cached(key, view, trigger_key), job.trigger


SQLITE_HASH = "jobstore_exporter_hash"
"""The digest SQLite computes for the SELECT: Python's own ``hash`` of the bytes, a C builtin
registered on the connection (``create_function``), so no Python bytecode runs per row and the
bytes are not kept between polls. It is 64 bits wide and salted per process, which is all that
is needed: it only ever compares one row with itself at the last poll within one process. A
changed row goes unnoticed with odds of 2**-64 per change (and is read again at its next
change or restart)."""

FETCH_CHUNK = 500
"""Ids per query when the bytes of changed rows are read."""

FIRE_TIME_BUDGET = 2.0
"""Seconds a poll may spend on fire-time arithmetic; the rest carries over to the next poll."""

WALK_RETRY = 600.0
"""Seconds before the fire times of a job whose walk ran out of its budget are tried again."""


def _fresh(rows: list[Row], old: list[Row]) -> Collection[Row]:
    """The rows new or changed since the last poll, by C-level comparisons: row by row while the
    order holds (the usual poll), as sets when rows came, went or moved."""
    if len(rows) == len(old):
        fresh = list(itertools.compress(rows, map(operator.ne, rows, old)))
        if len(fresh) <= len(rows) // 8:
            return fresh
    found = set(rows)
    found.difference_update(old)
    return found


_FIRST = operator.itemgetter(0)
_ID = operator.attrgetter("id")
_DECODED = operator.attrgetter("decoded")


def _trigger_key(job_id: str, trigger: Any) -> str | None:
    """Equal for triggers that fire at the same times: repr names the fields, zone and dates."""
    if trigger is None:
        return None
    try:
        return sys.intern(f"{type(trigger).__qualname__}:{trigger!r}")  # one copy per schedule
    except Exception:  # noqa: BLE001 - a decoded trigger with odd state: do not share its times
        return f"job:{job_id}"


def _trigger_of(state: object) -> Any:
    try:
        return decode_job_state(state).trigger  # type: ignore[arg-type]
    except UndecodableJob:  # decoded fine before; cannot happen for the same bytes
        return None


def _previous_fire(trigger: Any, now: float) -> tuple[float | None, float]:
    """The latest fire time at or before ``now``, and until when that answer holds."""
    if trigger is None:
        return None, now + 60.0
    moment = datetime.fromtimestamp(now, UTC)
    try:
        previous = previous_fire_time(trigger, moment)
        following = next_fire_time(trigger, moment + timedelta(microseconds=1))
    except WalkBudgetExceeded:
        raise
    except Exception:  # noqa: BLE001 - a decoded trigger with odd state must not stop the poll
        log.debug("cannot compute fire times", exc_info=True)
        return None, now + 60.0
    # A date trigger whose date has passed answers with that old date: no next time.
    until = following.timestamp() if following is not None else math.inf
    if until <= now:
        until = math.inf
    return (previous.timestamp() if previous is not None else None), until


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
