"""On-demand reads of one job's runs for the job pages: bounded, indexed, cached, capped.

The snapshot holds what ``/metrics`` needs, not every run, so a job page asks the history table
itself. To keep that from touching the scheduler or ``/metrics``:

* every query is one range of the ``(job_id, id)`` index, newest first, with a ``LIMIT``, so it
  costs the same at a thousand rows and at ten million;
* it runs in a worker thread, through a read-only engine of its own (``exporter.sidecar.db``:
  read-only session, the poller's statement timeout, SQLite opened ``mode=ro`` with no lingering
  transaction), so the poller's connections are never taken;
* page work (queries, statistics, rendering) takes turns: one at a time across all stores,
  and after a turn that took *t* seconds the next starts no sooner than *t* x
  (1 / :data:`DUTY` - 1) later, so pages never take more than a quarter of a core from the
  event loop that serves ``/metrics``. A request that cannot get a turn within the statement
  timeout is answered "busy" instead of queueing;
* answers are kept for :data:`CACHE_SECONDS`, so a burst of page loads becomes one query.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from exporter.shared.tables import as_utc, history_columns
from exporter.sidecar.config import StoreConfig
from exporter.sidecar.db import describe_error, qualified_table, reader_engine

T = TypeVar("T")
R = TypeVar("R")

MAX_CONCURRENT = 1
"""Page work under way at once, across all stores (the poller has its own engine)."""
DUTY = 0.25
"""The most of the time page work may run: a burst of page loads waits instead of taking the
CPU (and the GIL) that ``/metrics`` and the poller need."""
CACHE_SECONDS = 3.0
CACHE_ENTRIES = 512
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
STATS_ROWS = 2000
"""Statistics are computed over at most this many of the job's newest runs."""
ERROR_CHARS = 8000
"""Stored error text longer than this is cut (the page shows it, it is not an archive)."""

_RUN_COLUMNS = (
    "id",
    "status",
    "scheduled_run_time",
    "started_at",
    "finished_at",
    "duration_ms",
    "error_message",
)


class PageQueryError(Exception):
    """A page query failed; ``str`` is one line for the page, secrets scrubbed."""


class Busy(PageQueryError):
    """Too many page queries under way; the client should retry shortly."""


@dataclass(frozen=True, slots=True)
class Run:
    """One row of the history table as the pages show it; times are Unix seconds."""

    id: int
    status: str
    scheduled: float | None
    started: float | None
    finished: float | None
    duration: float | None
    error: str | None

    @property
    def delay(self) -> float | None:
        if self.started is None or self.scheduled is None:
            return None
        return self.started - self.scheduled

    @property
    def moment(self) -> float | None:
        """When the run happened: its start, else its scheduled time (missed runs)."""
        return self.started if self.started is not None else self.scheduled


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: tuple[Run, ...]
    next_before: int | None  # pass as ``before`` for the following page; None at the end


@dataclass(frozen=True, slots=True)
class JobData:
    """What a job page reads, over one connection: the stored ``job_state``, the newest runs
    (with error text) and the newest :data:`STATS_ROWS` runs for the statistics."""

    state: bytes | None
    recent: RunPage
    for_stats: tuple[Run, ...]
    history_error: str | None = None  # one line when the history table could not be read


def _seconds(value: Any) -> float | None:
    moment = as_utc(value)
    return moment.timestamp() if moment is not None else None


def _run(row: Any) -> Run | None:
    """A row as a Run; None for a row the exporter cannot use (non-integer id)."""
    row_id, status, scheduled, started, finished, duration_ms, error = row
    if not isinstance(row_id, int) or isinstance(row_id, bool):
        return None
    duration: float | None
    try:
        duration = float(duration_ms) / 1000.0 if duration_ms is not None else None
    except (TypeError, ValueError):
        duration = None
    started_at, finished_at = _seconds(started), _seconds(finished)
    if duration is None and started_at is not None and finished_at is not None:
        duration = max(0.0, finished_at - started_at)
    text = None if error is None else str(error)
    if text is not None and len(text) > ERROR_CHARS:
        text = text[:ERROR_CHARS] + " …(cut)"
    return Run(
        id=row_id,
        status=str(status),
        scheduled=_seconds(scheduled),
        started=started_at,
        finished=finished_at,
        duration=duration,
        error=text,
    )


class StoreQueries:
    """The SQL of the pages for one store. Blocking: called from worker threads."""

    def __init__(self, store: StoreConfig, engine: sa.Engine | None = None) -> None:
        self.store = store
        self.engine = engine or reader_engine(store.url, store.statement_timeout)
        self.history = history_columns(store.history_table, store.schema)
        self.jobs = qualified_table(
            store.jobs_table,
            store.schema,
            [sa.Column("id", sa.Unicode(191)), sa.Column("job_state", sa.LargeBinary)],
        )

    def _select(
        self, job_id: str, limit: int, before: int | None = None, *, errors: bool = True
    ) -> sa.Select[Any]:
        h = self.history.c
        columns = [h[name] for name in _RUN_COLUMNS[:-1]]
        error = h.error_message if errors else sa.null().label("error_message")
        query = sa.select(*columns, error).where(h.job_id == job_id)
        if before is not None:
            query = query.where(h.id < before)
        return query.order_by(h.id.desc()).limit(limit)

    def runs(self, job_id: str, limit: int, before: int | None = None) -> RunPage:
        """Up to ``limit`` runs older than ``before`` (all when None), newest first."""
        with self.engine.connect() as connection:
            return self._page(connection, job_id, limit, before)

    def _page(
        self, connection: sa.Connection, job_id: str, limit: int, before: int | None
    ) -> RunPage:
        rows = connection.execute(self._select(job_id, limit + 1, before)).all()
        runs = [run for run in map(_run, rows[:limit]) if run is not None]
        more = len(rows) > limit
        last = rows[limit - 1][0] if more and limit else None
        return RunPage(tuple(runs), last if isinstance(last, int) else None)

    def job_data(self, job_id: str, recent: int) -> JobData:
        """Everything a job page needs from the database, over one connection."""
        state_query = sa.select(self.jobs.c.job_state).where(self.jobs.c.id == job_id)
        with self.engine.connect() as connection:
            value = connection.execute(state_query).scalar()
            state = bytes(value) if value is not None else None
            try:
                page = self._page(connection, job_id, recent, None)
                rows = connection.execute(self._select(job_id, STATS_ROWS, errors=False)).all()
            except sa.exc.SQLAlchemyError as exc:
                store = self.store
                error = describe_error(exc, store.display_url, store.secrets)
                return JobData(state, RunPage((), None), (), error)
        stats = tuple(run for run in map(_run, rows) if run is not None)
        return JobData(state, page, stats)

    def latest(self, job_ids: Sequence[str], per_job: int) -> dict[str, tuple[Run, ...]]:
        """The newest ``per_job`` runs of each job (no error text), over one connection: one
        index range per job."""
        result: dict[str, tuple[Run, ...]] = {}
        with self.engine.connect() as connection:
            for job_id in job_ids:
                query = self._select(job_id, per_job, errors=False)
                rows = connection.execute(query).all()
                result[job_id] = tuple(run for run in map(_run, rows) if run is not None)
        return result

    def close(self) -> None:
        self.engine.dispose()


class RunReader:
    """The pages' way to the history tables: one :class:`StoreQueries` per store, a shared
    turn limit and a short cache. Async: every query runs in a worker thread."""

    def __init__(
        self,
        *,
        max_concurrent: int = MAX_CONCURRENT,
        duty: float = DUTY,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stores: dict[str, StoreQueries] = {}
        self._turns = asyncio.Semaphore(max_concurrent)
        self._rest = 1.0 / duty - 1.0
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._cache_seconds = cache_seconds
        self._clock = clock

    def queries(self, store: StoreConfig) -> StoreQueries:
        """The store's queries; rebuilt when a reload changed the store's settings."""
        current = self._stores.get(store.name)
        if current is not None and current.store == store:
            return current
        if current is not None:
            current.close()
            self._drop(store.name)
        current = self._stores[store.name] = StoreQueries(store)
        return current

    def forget_others(self, names: set[str]) -> None:
        """Close the engines of stores no longer configured."""
        for name in [n for n in self._stores if n not in names]:
            self._stores.pop(name).close()
            self._drop(name)

    def _drop(self, name: str) -> None:
        for key in [k for k in self._cache if k[0] == name]:
            del self._cache[key]

    async def call(self, store: StoreConfig, key: tuple[Any, ...], work: Callable[[], T]) -> T:
        """``work()`` in a thread under a turn, or the cached answer for ``(store, *key)``."""
        full = (store.name, *key)
        now = self._clock()
        hit = self._cache.get(full)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(full)
            return hit[1]  # type: ignore[no-any-return]
        try:
            value = await self.turn(work, store.statement_timeout)
        except PageQueryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any database failure becomes one line
            raise PageQueryError(describe_error(exc, store.display_url, store.secrets)) from None
        self._remember(full, value)
        return value

    async def read_then(
        self,
        store: StoreConfig,
        key: tuple[Any, ...],
        work: Callable[[], T],
        then: Callable[[T], R],
    ) -> R:
        """Like :meth:`call`, then ``then(value)`` in the same turn: a page reads and renders
        in one turn, so it waits for one rest, not one between its read and its render."""
        full = (store.name, *key)
        hit = self._cache.get(full)
        if hit is not None and hit[0] > self._clock():
            self._cache.move_to_end(full)
            cached: T = hit[1]
            return await self.turn(lambda: then(cached), store.statement_timeout)

        def both() -> tuple[T, R]:
            try:
                value = work()
            except Exception as exc:  # noqa: BLE001 - any database failure becomes one line
                message = describe_error(exc, store.display_url, store.secrets)
                raise PageQueryError(message) from None
            return value, then(value)

        value, result = await self.turn(both, store.statement_timeout)
        self._remember(full, value)
        return result

    def _remember(self, full: tuple[Any, ...], value: Any) -> None:
        self._cache[full] = (self._clock() + self._cache_seconds, value)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    async def turn(self, work: Callable[[], T], wait: float) -> T:
        """``work()`` in a worker thread when its turn comes (see the module's docstring);
        :class:`Busy` when no turn came within ``wait`` seconds."""
        try:
            await asyncio.wait_for(self._turns.acquire(), timeout=wait)
        except TimeoutError:
            raise Busy("too many page loads at once; try again in a few seconds") from None
        started = time.monotonic()
        try:
            return await asyncio.to_thread(work)
        finally:
            # Rest before the next turn, in proportion to this one (capped: a slow database
            # query is mostly waiting, not computing).
            rest = min((time.monotonic() - started) * self._rest, 0.2)
            asyncio.get_running_loop().call_later(rest, self._turns.release)

    async def runs(
        self, store: StoreConfig, job_id: str, limit: int, before: int | None = None
    ) -> RunPage:
        queries = self.queries(store)
        return await self.call(
            store, ("runs", job_id, limit, before), lambda: queries.runs(job_id, limit, before)
        )

    async def job_data(
        self, store: StoreConfig, job_id: str, recent: int, then: Callable[[JobData], R]
    ) -> R:
        """What a job page reads (cached), and ``then`` of it, in one turn."""
        queries = self.queries(store)
        return await self.read_then(
            store, ("job", job_id, recent), lambda: queries.job_data(job_id, recent), then
        )

    async def latest(
        self, store: StoreConfig, job_ids: Sequence[str], per_job: int
    ) -> dict[str, tuple[Run, ...]]:
        queries = self.queries(store)
        ids = tuple(job_ids)
        return await self.call(
            store, ("latest", ids, per_job), lambda: queries.latest(ids, per_job)
        )

    def close(self) -> None:
        for queries in self._stores.values():
            queries.close()
        self._stores.clear()
        self._cache.clear()
