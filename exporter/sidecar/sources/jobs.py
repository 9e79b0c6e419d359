"""The job store source: one short SELECT of ``apscheduler_jobs`` per poll.

Reads the three columns directly with SQLAlchemy Core and never goes through
``SQLAlchemyJobStore``, whose ``get_all_jobs()`` deletes every row it cannot restore. ``job_state``
is decoded by the restricted unpickler, and only for rows whose bytes changed since the last
poll: a steady store costs one SELECT and a dictionary lookup per job. On PostgreSQL and
MySQL/MariaDB that SELECT returns ``md5(job_state)`` instead of the bytes, and the bytes of the
few rows whose digest changed are read by id afterwards.

One bad row costs that row, never the read: a ``job_state`` larger than the decoder accepts is
not even fetched (the SELECT returns its length instead), an id that is not valid UTF-8 (SQLite
keeps any bytes) marks its row undecodable, and text no encoder accepts is replaced.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
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
    """What we know of one row, kept while its bytes stay the same.

    ``view`` is the last JobView published for the row: a steady poll hands out the very same
    object. ``previous`` (the latest fire time the trigger implied) only changes when the clock
    passes the trigger's next fire time, ``previous_until``, so it is recomputed about once per
    run instead of on every poll (cron arithmetic costs around a millisecond per job).
    """

    state: object  # what identifies the row's job_state: see _state_key
    view: JobView
    trigger_key: str | None = None  # None: no trigger to compute fire times from
    previous_until: float = -math.inf
    gave_up: bool = False  # the fire-time walk ran out of its budget (logged once)


class JobStoreSource:
    """Reads one store's job table; remembers decoded rows between polls."""

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
        self._queries: dict[str, sa.Select[Any]] = {}
        self._cache: dict[str, _Cached] = {}
        self._by_raw: dict[Any, _Cached] = {}  # the same entries, by the id as the driver gives it
        # Fire times by trigger: stores hold many jobs with the same schedule, and cron
        # arithmetic is the dearest part of a cold poll.
        self._fire_times: dict[str, tuple[float | None, float]] = {}
        self._words: dict[str, tuple[str, str]] = {}  # trigger key -> (kind, schedule text)

    def read(self, connection: sa.Connection, now: float | None = None) -> JobsRead:
        """Run the SELECT, decode what changed, and describe every job."""
        dialect = connection.dialect.name
        digests = dialect in DIGEST_DIALECTS
        rows = connection.execute(self._query_for(dialect)).all()
        now = time.time() if now is None else now
        # With digests, the SELECT returned md5(job_state): the bytes of changed rows (and of
        # rows whose fire times must be worked out again) are read in a second query.
        fetched = self._states_needed(connection, rows, now) if digests else {}
        cache: dict[str, _Cached] = {}
        jobs: list[JobView] = []
        undecodable = 0
        budget_ends = time.monotonic() + FIRE_TIME_BUDGET
        fire_times: dict[str, tuple[float | None, float]] = {}
        known_rows, by_raw = self._by_raw, {}
        for raw_id, next_run_time, size, state in rows:
            entry = known_rows.get(raw_id)
            if entry is not None and (
                (entry.state == ("md5", state) and state is not None)
                if digests
                else (type(state) is bytes and len(state) <= _KEEP_BYTES and entry.state == state)
            ):
                # An unchanged row (most of a steady poll): no decoding, no new objects.
                view = entry.view
                shared = entry.trigger_key
                if shared is None or now < entry.previous_until:
                    if shared is not None:
                        fire_times.setdefault(
                            shared, (view.previous_fire_time, entry.previous_until)
                        )
                    next_run = _as_float(next_run_time)
                    if next_run != view.next_run_time:
                        view = entry.view = replace(view, next_run_time=next_run)
                    cache[view.id] = entry
                    by_raw[raw_id] = entry
                    if not view.decoded:
                        undecodable += 1
                    jobs.append(view)
                    continue
            job_id, valid_id = decode_id(raw_id)
            if digests:
                digest = state
                key: object = ("md5", digest) if digest is not None else ("length", size)
                state = fetched.get(raw_id)
                cached = self._cache.get(job_id)
                if digest is not None and state is None and (cached is None or cached.state != key):
                    continue  # changed, then deleted before its bytes were read: gone
            else:
                if isinstance(state, bytearray | memoryview):  # some drivers; never keep a view
                    state = bytes(state)
                key = _state_key(state, size)
            entry, trigger = self._entry(job_id, valid_id, state, size, key)
            cache[job_id] = entry
            by_raw[raw_id] = entry
            if not entry.view.decoded:
                undecodable += 1
            next_run = _as_float(next_run_time)
            previous = entry.view.previous_fire_time
            key = entry.trigger_key
            if key is not None and now >= entry.previous_until:
                known = fire_times.get(key) or self._fire_times.get(key)
                if known is not None and now < known[1]:
                    previous, entry.previous_until = known
                elif time.monotonic() < budget_ends and (trigger is not None or state is not None):
                    # Triggers are not kept between polls (a cron trigger is ~4 KB); the row's
                    # bytes are, and decoding them again costs far less than the arithmetic.
                    trigger = trigger if trigger is not None else _trigger_of(state)
                    previous, entry.previous_until = self._walk(entry, trigger, now)
                # else: over budget; this job's expected run waits for a later poll
            if key is not None and entry.previous_until > now:
                fire_times.setdefault(key, (previous, entry.previous_until))
            if next_run != entry.view.next_run_time or previous != entry.view.previous_fire_time:
                entry.view = replace(
                    entry.view, next_run_time=next_run, previous_fire_time=previous
                )
            jobs.append(entry.view)
        self._cache = cache  # rows that vanished are forgotten with the old dict
        self._by_raw = by_raw
        self._fire_times = fire_times
        if len(self._words) > 2 * len(cache) + 1000:  # forget schedules no job has any more
            live = {entry.trigger_key for entry in cache.values()}
            self._words = {k: v for k, v in self._words.items() if k in live}
        jobs.sort(key=lambda job: job.id)
        return JobsRead(tuple(jobs), undecodable)

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

    def _query_for(self, dialect: str) -> sa.Select[Any]:
        """The SELECT: ``job_state`` only up to the size the decoder accepts, and its length.

        A larger value would be refused unread anyway; not fetching it keeps a few 50 MB rows
        from being copied out of the database at every poll. SQLite keeps whatever bytes an app
        wrote in a text column and its driver fails the whole read on invalid UTF-8, so there
        the id and the state are read as bytes.
        """
        query = self._queries.get(dialect)
        if query is None:
            column = self.table.c
            size = sa.func.length(column.job_state)
            state: Any = column.job_state
            job_id: Any = column.id
            if dialect == "sqlite":
                job_id = sa.cast(job_id, sa.LargeBinary)
                state = sa.cast(state, sa.LargeBinary)
            elif dialect in DIGEST_DIALECTS:
                state = sa.func.md5(state)  # the bytes follow only for rows that changed
            state = sa.case((size <= MAX_JOB_STATE_BYTES, state), else_=sa.null())
            query = sa.select(job_id, column.next_run_time, size, state)
            self._queries[dialect] = query
        return query

    def _states_needed(
        self, connection: sa.Connection, rows: Sequence[Any], now: float
    ) -> dict[Any, bytes]:
        """``job_state`` of the rows whose digest changed, and of unchanged rows whose fire times
        must be worked out again (about once per run of their trigger), by id.

        A steady poll of a large store then moves ids, fire times and 32-character digests
        instead of every row's bytes.
        """
        cache, fire_times = self._cache, self._fire_times
        wanted = []
        for raw_id, _next_run, _size, digest in rows:
            if digest is None:
                continue  # too large to fetch (or NULL): judged by its length alone
            cached = cache.get(raw_id)
            if cached is None or cached.state != ("md5", digest):
                wanted.append(raw_id)
                continue
            key = cached.trigger_key
            if key is not None and now >= cached.previous_until:
                known = fire_times.get(key)
                if known is None or now >= known[1]:
                    wanted.append(raw_id)
        states: dict[Any, bytes] = {}
        column = self.table.c
        for start in range(0, len(wanted), FETCH_CHUNK):
            chunk = wanted[start : start + FETCH_CHUNK]
            query = sa.select(column.id, column.job_state).where(column.id.in_(chunk))
            for raw_id, state in connection.execute(query):
                if state is not None:
                    states[raw_id] = bytes(state)  # never keep a driver's view
        return states

    def _entry(
        self, job_id: str, valid_id: bool, state: object, size: object, key: object
    ) -> tuple[_Cached, Any]:
        """The cached row, and the decoded trigger when the row had to be decoded now."""
        cached = self._cache.get(job_id)
        if cached is not None and cached.state == key:
            return cached, None
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
            name=capped(name),
            func=func,
            executor=capped(executor),
            trigger=words[0],
            schedule=words[1],
            misfire_grace_time=job.misfire_grace_time,
            text_replaced=bool(replaced),
        )
        return _Cached(key, view, trigger_key), job.trigger


DIGEST_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})
"""Where the SELECT compares ``md5(job_state)``, computed by the server, instead of the bytes."""

FETCH_CHUNK = 500
"""Ids per query when the bytes of changed rows are read."""

_KEEP_BYTES = 64 * 1024
"""Rows up to this size are remembered by their bytes, larger ones by a digest."""


def _state_key(state: object, size: object) -> object:
    """What tells whether a row's ``job_state`` changed since the last poll.

    The bytes themselves for ordinary rows (comparing is cheaper than hashing), a digest for
    large ones, and the length for those too large to be fetched, so the cache never holds a
    large value.
    """
    if state is None:
        return ("length", size)
    if isinstance(state, bytes) and len(state) > _KEEP_BYTES:
        return ("blake2b", hashlib.blake2b(state, digest_size=32).digest())
    return state


FIRE_TIME_BUDGET = 2.0
"""Seconds a poll may spend on fire-time arithmetic; the rest carries over to the next poll."""

WALK_RETRY = 600.0
"""Seconds before the fire times of a job whose walk ran out of its budget are tried again."""


def _trigger_key(job_id: str, trigger: Any) -> str | None:
    """Equal for triggers that fire at the same times: repr names the fields, zone and dates."""
    if trigger is None:
        return None
    try:
        return f"{type(trigger).__qualname__}:{trigger!r}"
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
