"""Run timing and events turned into history rows.

APScheduler's events carry no start time (SUBMITTED fires when a run is handed to a possibly busy
pool, and on a BackgroundScheduler EXECUTED may even arrive first), so the recorder times runs
where they happen. For every stock executor it replaces the executor's `_do_submit_job` with a
copy that submits `timed_run_job` (or `timed_run_coroutine_job`) instead of APScheduler's
`run_job`. Those call the real `run_job` once per scheduled run time with a stand-in job whose
`func` notes the exact start and end around the real function, so the events, logs and misfire
decisions stay APScheduler's own. In a process pool they run in the child (they are plain
module-level functions, so they pickle) and send the timings back on the events they return.

Runs of executors the recorder cannot instrument (custom ones) are still recorded from their
EXECUTED/ERROR/MISSED events, without a start time. MAX_INSTANCES events become `skipped` rows.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.events import (
    EVENT_EXECUTOR_ADDED,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_PAUSED,
    EVENT_SCHEDULER_RESUMED,
    EVENT_SCHEDULER_SHUTDOWN,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    SchedulerEvent,
)
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.executors.debug import DebugExecutor
from apscheduler.executors.pool import BasePoolExecutor, ProcessPoolExecutor
from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.util import iscoroutinefunction_partial

from exporter.kit.heartbeat import Heartbeat, utcnow
from exporter.kit.writer import HistoryWriter, Task, WriterStats

try:  # APScheduler 3.11
    from apscheduler.executors.base import run_coroutine_job
except ImportError:  # pragma: no cover - APScheduler 3.10
    from apscheduler.executors.base_py3 import run_coroutine_job

try:
    from apscheduler.executors.asyncio import AsyncIOExecutor
except ImportError:  # pragma: no cover
    AsyncIOExecutor = None  # type: ignore[assignment,misc]

log = logging.getLogger("exporter.kit")

RUNNING, SUCCESS, FAILED, MISSED, SKIPPED = "running", "success", "failed", "missed", "skipped"

EVENTS = (
    EVENT_JOB_EXECUTED
    | EVENT_JOB_ERROR
    | EVENT_JOB_MISSED
    | EVENT_JOB_MAX_INSTANCES
    | EVENT_EXECUTOR_ADDED
    | EVENT_SCHEDULER_STARTED
    | EVENT_SCHEDULER_SHUTDOWN
    | EVENT_SCHEDULER_PAUSED
    | EVENT_SCHEDULER_RESUMED
)

# Attributes set on APScheduler's events (plain objects) by the timed run functions.
_RECORDED = "_jobstore_exporter_recorded"  # the recorder has this run's row already
_TIMING = "_jobstore_exporter_timing"  # from a process pool child: (run_id, start, secs, pid, err)

ERROR_MESSAGE_CHARS = 2_000


_run_prefix = uuid.uuid4().hex[:24]
_run_counter = itertools.count(1)


def _reseed_run_ids() -> None:  # a forked child must not repeat its parent's ids
    global _run_prefix, _run_counter
    _run_prefix = uuid.uuid4().hex[:24]
    _run_counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed_run_ids)


def new_run_id() -> str:
    """A unique run key (≤ 36 characters): a random per-process prefix and a counter."""
    return f"{_run_prefix}-{next(_run_counter):x}"


def error_message(exc: BaseException | None) -> str | None:
    """`ExceptionType: message`, shortened to a sane size."""
    if exc is None:
        return None
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the row
        text = "<unprintable exception>"
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return _shorten(message, ERROR_MESSAGE_CHARS)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 15] + " [... shortened]"


def shorten_traceback(text: str | None, limit: int) -> str | None:
    """Keep the end of a long traceback: the innermost frames say where it failed."""
    if not text or len(text) <= limit:
        return text or None
    cut = len(text) - limit
    return f"[... {cut} characters of outer frames dropped]\n" + text[cut:]


def _job_traceback(event: JobExecutionEvent) -> str | None:
    """The event's traceback without the recorder's own timing frame."""
    exc = event.exception
    tb = getattr(exc, "__traceback__", None)
    if tb is None:
        return event.traceback
    frames = [
        frame
        for frame in traceback.extract_tb(tb)
        if not (frame.filename == __file__ and frame.name == "timed")
    ]
    return "".join(traceback.format_list(frames))


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def _naive_utc(moment: datetime | None) -> datetime | None:
    """An aware datetime as naive UTC (exact; cheaper than astimezone + replace)."""
    if moment is None or moment.tzinfo is None:
        return moment
    return _EPOCH + (moment - _EPOCH_UTC)


def _from_timestamp(seconds: float | None) -> datetime | None:
    """Unix seconds as a naive UTC datetime, to the microsecond."""
    if seconds is None:
        return None
    return _EPOCH + timedelta(seconds=seconds)


# --------------------------------------------------------------------------------------------
# The timed run functions (module level: a process pool pickles them by name)
# --------------------------------------------------------------------------------------------


class _Clock:
    __slots__ = ("started", "seconds", "row")

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds = 0.0
        self.row: dict[str, Any] | None = None  # the `running` row, reused for the final one


class _TimedJob:
    """What `run_job` sees instead of the job: the same job, with a timing `func`."""

    __slots__ = ("_job", "func")

    def __init__(self, job: Job, func: Callable[..., Any]) -> None:
        self._job = job
        self.func = func

    def __getattr__(self, name: str) -> Any:  # id, args, kwargs, misfire_grace_time, ...
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)

    def __repr__(self) -> str:
        return repr(self._job)


def _sync_timer(
    job: Job, clock: _Clock, on_start: Callable[[_Clock], None] | None
) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        clock.started = time.time()
        if on_start is not None:
            on_start(clock)
        began = time.perf_counter()
        try:
            return job.func(*args, **kwargs)
        finally:
            clock.seconds = time.perf_counter() - began

    return timed


def _async_timer(
    job: Job, clock: _Clock, on_start: Callable[[_Clock], None] | None
) -> Callable[..., Any]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        clock.started = time.time()
        if on_start is not None:
            on_start(clock)
        began = time.perf_counter()
        try:
            return await job.func(*args, **kwargs)
        finally:
            clock.seconds = time.perf_counter() - began

    return timed


def timed_run_job(
    job: Job,
    jobstore_alias: str,
    run_times: Sequence[datetime],
    logger_name: str,
    sink: Recorder | None = None,
    run_ids: Sequence[str] | None = None,
) -> list[JobExecutionEvent]:
    """`run_job`, with each run's real start and end measured around the job's function.

    In-process (`sink` given) rows go straight to the recorder's buffer. In a process pool child
    (`sink` None) the timings ride back to the parent on the returned events.
    """
    events: list[JobExecutionEvent] = []
    for index, run_time in enumerate(run_times):
        run_id = run_ids[index] if run_ids else new_run_id()
        clock = _Clock()
        on_start = sink.start_hook(run_id, job, run_time) if sink is not None else None
        stand_in = _TimedJob(job, _sync_timer(job, clock, on_start))
        produced = run_job(stand_in, jobstore_alias, [run_time], logger_name)
        _settle(job, run_time, run_id, clock, produced, sink)
        events.extend(produced)
    return events


async def timed_run_coroutine_job(
    job: Job,
    jobstore_alias: str,
    run_times: Sequence[datetime],
    logger_name: str,
    sink: Recorder | None = None,
) -> list[JobExecutionEvent]:
    """`run_coroutine_job` with the same per-run timing as `timed_run_job`."""
    events: list[JobExecutionEvent] = []
    for run_time in run_times:
        run_id = new_run_id()
        clock = _Clock()
        on_start = sink.start_hook(run_id, job, run_time) if sink is not None else None
        stand_in = _TimedJob(job, _async_timer(job, clock, on_start))
        produced = await run_coroutine_job(stand_in, jobstore_alias, [run_time], logger_name)
        _settle(job, run_time, run_id, clock, produced, sink)
        events.extend(produced)
    return events


def _settle(
    job: Job,
    run_time: datetime,
    run_id: str,
    clock: _Clock,
    produced: list[JobExecutionEvent],
    sink: Recorder | None,
) -> None:
    event = produced[-1] if produced else None
    if sink is None:
        if event is not None:
            failure = None
            if event.code == EVENT_JOB_ERROR:
                failure = (error_message(event.exception), _job_traceback(event))
            timing = (run_id, clock.started, clock.seconds, os.getpid(), failure)
            setattr(event, _TIMING, timing)
        return
    try:
        if clock.started is None:  # run_job judged the run missed and never called it
            sink.run_missed(job.id, job.name, run_time, run_id)
        else:
            failed = event is not None and event.code == EVENT_JOB_ERROR
            sink.run_finished(
                run_id,
                job.id,
                job.name,
                run_time,
                clock.started,
                clock.seconds,
                FAILED if failed else SUCCESS,
                error_message(event.exception) if failed and event is not None else None,
                _job_traceback(event) if failed and event is not None else None,
                start_row=clock.row,
            )
        for produced_event in produced:
            setattr(produced_event, _RECORDED, True)
    except Exception:  # noqa: BLE001 - recording must never break the scheduler
        log.exception("could not record a run of job %r", job.id)


# --------------------------------------------------------------------------------------------
# Executor instrumentation
# --------------------------------------------------------------------------------------------


def _executor_kind(executor: BaseExecutor) -> str | None:
    """Which stock submission `executor` uses, or None when the recorder must fall back."""
    impl = type(executor)._do_submit_job
    if isinstance(executor, BasePoolExecutor) and impl in (
        BasePoolExecutor._do_submit_job,
        ProcessPoolExecutor._do_submit_job,
    ):
        pool = getattr(executor, "_pool", None)
        if isinstance(pool, concurrent.futures.ProcessPoolExecutor):
            return "process"
        if isinstance(pool, concurrent.futures.Executor):
            return "thread"
        return None
    if (
        AsyncIOExecutor is not None
        and isinstance(executor, AsyncIOExecutor)
        and impl is AsyncIOExecutor._do_submit_job
    ):
        return "asyncio"
    if isinstance(executor, DebugExecutor) and impl is DebugExecutor._do_submit_job:
        return "debug"
    return None


def _pool_callback(
    executor: Any, job: Job, on_result: Callable[[Any], Any] | None = None
) -> Callable[[Any], None]:
    """The stock pool executors' done-callback, with a hook for process pool results."""

    def callback(f: Any) -> None:
        exc, tb = (
            f.exception_info()
            if hasattr(f, "exception_info")
            else (f.exception(), getattr(f.exception(), "__traceback__", None))
        )
        if exc:
            if on_result is not None:
                on_result(exc)
            executor._run_job_error(job.id, exc, tb)
        else:
            events = f.result()
            if on_result is not None:
                on_result(events)
            executor._run_job_success(job.id, events)

    return callback


def _make_submit(recorder: Recorder, executor: Any, kind: str) -> Callable[[Job, Any], None]:
    stock = type(executor)._do_submit_job

    def submit_thread(job: Job, run_times: list[datetime]) -> None:
        if not recorder.wants(job):
            return stock(executor, job, run_times)
        f = executor._pool.submit(
            timed_run_job, job, job._jobstore_alias, run_times, executor._logger.name, recorder
        )
        f.add_done_callback(_pool_callback(executor, job))

    def submit_process(job: Job, run_times: list[datetime]) -> None:
        if not recorder.wants(job):
            return stock(executor, job, run_times)
        from concurrent.futures.process import BrokenProcessPool

        run_ids = [new_run_id() for _ in run_times]
        args = (job, job._jobstore_alias, run_times, executor._logger.name, None, run_ids)
        try:
            f = executor._pool.submit(timed_run_job, *args)
        except BrokenProcessPool:
            executor._logger.warning("Process pool is broken; replacing pool with a fresh instance")
            executor._pool = executor._pool.__class__(
                executor._pool._max_workers, **getattr(executor, "pool_kwargs", {})
            )
            f = executor._pool.submit(timed_run_job, *args)
        # The child cannot reach the recorder, so the run shows as `running` from submission;
        # its real start replaces this one when the child reports back.
        recorder.run_started(run_ids[0], job.id, job.name, run_times[0], time.time())
        f.add_done_callback(
            _pool_callback(
                executor, job, lambda r: recorder.child_results(job, run_times, run_ids, r)
            )
        )

    def submit_asyncio(job: Job, run_times: list[datetime]) -> None:
        if not recorder.wants(job):
            return stock(executor, job, run_times)

        def callback(f: Any) -> None:
            executor._pending_futures.discard(f)
            try:
                events = f.result()
            except BaseException:
                executor._run_job_error(job.id, *sys.exc_info()[1:])
            else:
                executor._run_job_success(job.id, events)

        logger_name = executor._logger.name
        if iscoroutinefunction_partial(job.func):
            coro = timed_run_coroutine_job(
                job, job._jobstore_alias, run_times, logger_name, recorder
            )
            f = executor._eventloop.create_task(coro)
        else:
            f = executor._eventloop.run_in_executor(
                None, timed_run_job, job, job._jobstore_alias, run_times, logger_name, recorder
            )
        f.add_done_callback(callback)
        executor._pending_futures.add(f)

    def submit_debug(job: Job, run_times: list[datetime]) -> None:
        if not recorder.wants(job):
            return stock(executor, job, run_times)
        try:
            events = timed_run_job(
                job, job._jobstore_alias, run_times, executor._logger.name, recorder
            )
        except BaseException:
            executor._run_job_error(job.id, *sys.exc_info()[1:])
        else:
            executor._run_job_success(job.id, events)

    submits: dict[str, Callable[[Job, list[datetime]], None]] = {
        "thread": submit_thread,
        "process": submit_process,
        "asyncio": submit_asyncio,
        "debug": submit_debug,
    }
    return submits[kind]


# --------------------------------------------------------------------------------------------
# The recorder
# --------------------------------------------------------------------------------------------


class Recorder:
    """History recording (and heartbeats) attached to one scheduler; made by `instrument()`.

    Thread-safe: rows come from worker threads, the event loop and the scheduler's thread, and
    only ever land in the writer's buffer.
    """

    def __init__(
        self,
        scheduler: BaseScheduler,
        writer: HistoryWriter,
        *,
        jobstore: str | None,
        scheduler_id: str,
        host: str,
        pid: int,
        max_traceback_chars: int = 8_000,
        shutdown_timeout: float = 5.0,
        on_started: Callable[[], None] | None = None,
        on_state_change: Callable[[], None] | None = None,
        on_stopped: Callable[[float], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.writer = writer
        self.jobstore = jobstore
        self.scheduler_id = scheduler_id[:191]
        self.host = host[:255]
        self.pid = pid
        self.max_traceback_chars = max_traceback_chars
        self.shutdown_timeout = shutdown_timeout
        self._on_started = on_started
        self._on_state_change = on_state_change
        self._on_stopped = on_stopped
        self.heartbeat: Heartbeat | None = None
        self.heartbeat_task: Task | None = None
        self.owns_engine = False
        self.closed = False
        self.on_close: list[Callable[[], object]] = []
        self._names: dict[str, str | None] = {}  # job id -> name, for skipped and fallback rows
        self._patched: dict[int, tuple[BaseExecutor, Callable[..., None]]] = {}
        self._patch_lock = threading.Lock()
        self.fallback_executors: list[str] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def stats(self) -> WriterStats:
        """Counters of the writer: rows written, pending, dropped on overflow, write errors."""
        return self.writer.stats()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (at most `timeout` s) until every run recorded so far is in the database."""
        return self.writer.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Detach from the scheduler: final `stopped` heartbeat, flush, stop the writer thread.

        Returns True if every buffered row was written. Called at interpreter exit too.
        """
        if self.closed:
            return True
        self.closed = True
        timeout = self.shutdown_timeout if timeout is None else timeout
        for hook in self.on_close:
            hook()
        with contextlib.suppress(KeyError):
            self.scheduler.remove_listener(self.on_event)
        self.restore_executors()
        if self.heartbeat is not None and self.heartbeat_task is not None:
            self.heartbeat.final_requested = True
            self.writer.run_soon(self.heartbeat_task)
        done = self.writer.stop(timeout)
        if self.owns_engine:
            self.writer.engine.dispose()
        return done

    # ---- rows ------------------------------------------------------------------------------

    def wants(self, job: Job) -> bool:
        """True if runs of `job` are recorded (its job store is the instrumented one)."""
        if self.jobstore is not None and job._jobstore_alias != self.jobstore:
            return False
        self._names[job.id] = job.name
        return True

    def _row(
        self,
        run_id: str,
        job_id: str,
        job_name: str | None,
        scheduled: datetime | None,
        started: float | None,
        seconds: float | None,
        status: str,
        error: str | None = None,
        trace: str | None = None,
        finished: datetime | None = None,
        pid: int | None = None,
    ) -> dict[str, Any]:
        if finished is None and started is not None and seconds is not None:
            finished = _from_timestamp(started + seconds)
        return {
            "run_id": run_id,
            "job_id": job_id[:191],
            "job_name": job_name[:255] if job_name else None,
            "scheduled_run_time": _naive_utc(scheduled),
            "started_at": _from_timestamp(started),
            "finished_at": finished,
            "duration_ms": seconds * 1000.0 if seconds is not None else None,
            "status": status,
            "error_message": error,
            "traceback": shorten_traceback(trace, self.max_traceback_chars),
            "host": self.host,
            "pid": pid if pid is not None else self.pid,
            "scheduler_id": self.scheduler_id,
        }

    def start_hook(self, run_id: str, job: Job, run_time: datetime) -> Callable[[_Clock], None]:
        def started(clock: _Clock) -> None:
            assert clock.started is not None
            clock.row = self.run_started(run_id, job.id, job.name, run_time, clock.started)

        return started

    def run_started(
        self, run_id: str, job_id: str, job_name: str | None, run_time: datetime, at: float
    ) -> dict[str, Any] | None:
        """Buffer the `running` row; returns it (not to be modified: the writer may read it)."""
        try:
            row = self._row(run_id, job_id, job_name, run_time, at, None, RUNNING)
            self.writer.put_start(run_id, row)
            return row
        except Exception:  # noqa: BLE001 - never break the job
            log.exception("could not record the start of job %r", job_id)
            return None

    def run_finished(
        self,
        run_id: str,
        job_id: str,
        job_name: str | None,
        run_time: datetime,
        started: float,
        seconds: float,
        status: str,
        error: str | None,
        trace: str | None,
        pid: int | None = None,
        start_row: dict[str, Any] | None = None,
    ) -> None:
        if start_row is not None:  # same run: only the outcome columns differ
            row = dict(start_row)
            row["finished_at"] = _from_timestamp(started + seconds)
            row["duration_ms"] = seconds * 1000.0
            row["status"] = status
            row["error_message"] = error
            row["traceback"] = shorten_traceback(trace, self.max_traceback_chars)
        else:
            row = self._row(
                run_id, job_id, job_name, run_time, started, seconds, status, error, trace, pid=pid
            )
        self.writer.put_final(run_id, row)

    def run_missed(
        self, job_id: str, job_name: str | None, run_time: datetime, run_id: str | None = None
    ) -> None:
        run_id = run_id or new_run_id()
        row = self._row(run_id, job_id, job_name, run_time, None, None, MISSED, finished=utcnow())
        self.writer.put_final(run_id, row)

    def child_results(
        self, job: Job, run_times: Sequence[datetime], run_ids: Sequence[str], result: Any
    ) -> None:
        """Rows for a process pool submission, from the events its child returned."""
        try:
            if isinstance(result, BaseException):
                message = "the worker process failed: " + (error_message(result) or "")
                row = self._row(
                    run_ids[0],
                    job.id,
                    job.name,
                    run_times[0],
                    None,
                    None,
                    FAILED,
                    message,
                    finished=utcnow(),
                )
                self.writer.put_final(run_ids[0], row)
                return
            for event in result:
                timing = getattr(event, _TIMING, None)
                if timing is None:
                    continue
                run_id, started, seconds, pid, failure = timing
                error, trace = failure if failure else (None, None)
                if event.code == EVENT_JOB_MISSED or started is None:
                    self.run_missed(job.id, job.name, event.scheduled_run_time, run_id)
                else:
                    failed = event.code == EVENT_JOB_ERROR
                    self.run_finished(
                        run_id,
                        job.id,
                        job.name,
                        event.scheduled_run_time,
                        started,
                        seconds,
                        FAILED if failed else SUCCESS,
                        error,
                        trace,
                        pid=pid,
                    )
                setattr(event, _RECORDED, True)
        except Exception:  # noqa: BLE001
            log.exception("could not record a process pool run of job %r", job.id)

    # ---- events ----------------------------------------------------------------------------

    def on_event(self, event: SchedulerEvent) -> None:
        """The scheduler listener: cheap, never blocks except for the flush at shutdown."""
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001
            log.exception("history recorder failed to handle %r", event)

    def _on_event(self, event: Any) -> None:
        code = event.code
        if code & (EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED):
            if not getattr(event, _RECORDED, False) and self._wants_store(event.jobstore):
                self._record_event(event)
        elif code == EVENT_JOB_MAX_INSTANCES:
            if self._wants_store(event.jobstore):
                name = self._names.get(event.job_id)
                for run_time in event.scheduled_run_times:
                    run_id = new_run_id()
                    row = self._row(
                        run_id,
                        event.job_id,
                        name,
                        run_time,
                        None,
                        None,
                        SKIPPED,
                        "maximum number of running instances reached",
                        finished=utcnow(),
                    )
                    self.writer.put_final(run_id, row)
        elif code == EVENT_EXECUTOR_ADDED:
            self.instrument_executor(event.alias)
        elif code == EVENT_SCHEDULER_STARTED:
            if self._on_started is not None:
                self._on_started()
        elif code in (EVENT_SCHEDULER_PAUSED, EVENT_SCHEDULER_RESUMED):
            if self._on_state_change is not None:
                self._on_state_change()
        elif code == EVENT_SCHEDULER_SHUTDOWN and self._on_stopped is not None:
            self._on_stopped(self.shutdown_timeout)

    def _wants_store(self, alias: str) -> bool:
        return self.jobstore is None or alias == self.jobstore

    def _record_event(self, event: JobExecutionEvent) -> None:
        """A run of an executor the recorder could not instrument: no start time known."""
        name = self._names.get(event.job_id)
        if event.code == EVENT_JOB_MISSED:
            self.run_missed(event.job_id, name, event.scheduled_run_time)
            return
        failed = event.code == EVENT_JOB_ERROR
        run_id = new_run_id()
        row = self._row(
            run_id,
            event.job_id,
            name,
            event.scheduled_run_time,
            None,
            None,
            FAILED if failed else SUCCESS,
            error_message(event.exception) if failed else None,
            event.traceback if failed else None,
            finished=utcnow(),
        )
        self.writer.put_final(run_id, row)

    # ---- executors -------------------------------------------------------------------------

    def instrument_executors(self) -> None:
        with self.scheduler._executors_lock:
            aliases = list(self.scheduler._executors)
        for alias in aliases:
            self.instrument_executor(alias)

    def instrument_executor(self, alias: str) -> None:
        executor = self.scheduler._executors.get(alias)
        if executor is None:
            return
        with self._patch_lock:
            if id(executor) in self._patched:
                return
            kind = _executor_kind(executor)
            if kind is None:
                self.fallback_executors.append(alias)
                log.info(
                    "executor %r (%s) is not one the recorder can time; its runs are recorded "
                    "from events, without start times",
                    alias,
                    type(executor).__name__,
                )
                return
            submit = _make_submit(self, executor, kind)
            executor._do_submit_job = submit  # type: ignore[method-assign]
            self._patched[id(executor)] = (executor, submit)

    def restore_executors(self) -> None:
        with self._patch_lock:
            for executor, submit in self._patched.values():
                if executor.__dict__.get("_do_submit_job") is submit:
                    del executor.__dict__["_do_submit_job"]
            self._patched.clear()


# --------------------------------------------------------------------------------------------
# Crash recovery and retention (run on the writer thread)
# --------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def close_orphaned_runs(
    engine: sa.Engine,
    history: sa.Table,
    heartbeats: sa.Table | None,
    *,
    me: str,
    host: str,
    include_own: bool,
    stale_after: float,
    dead_pid_after: float,
) -> int:
    """Close as `failed` the `running` rows whose scheduler process cannot be alive.

    A row's scheduler is taken for dead when
    - it is this scheduler's own id and `include_own` (called before this process has written
      any row: so the row is a previous incarnation's, e.g. a restarted container's);
    - its heartbeat is older than `stale_after` seconds;
    - it ran on this host under a pid that no longer exists, and its heartbeat (if any) is older
      than `dead_pid_after` seconds (a live process in another PID namespace still beats).
    Rows without a `scheduler_id` (written by something else, e.g. Aegis) are left alone.
    """
    now = utcnow()
    columns = [history.c.id, history.c.scheduler_id, history.c.host, history.c.pid]
    if heartbeats is not None:
        query = sa.select(*columns, heartbeats.c.last_seen, heartbeats.c.pid).select_from(
            history.outerjoin(heartbeats, heartbeats.c.scheduler_id == history.c.scheduler_id)
        )
    else:
        query = sa.select(*columns, sa.null(), sa.null()).select_from(history)
    query = query.where(history.c.status == RUNNING, history.c.scheduler_id.is_not(None))
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(query)]

    dead: dict[str, tuple[datetime, list[int]]] = {}
    for row_id, owner, row_host, row_pid, last_seen, beat_pid in rows:
        if owner == me and not include_own:
            continue
        age = (now - last_seen).total_seconds() if last_seen is not None else None
        pid = beat_pid if beat_pid is not None else row_pid
        if (
            owner == me
            or (age is not None and age > stale_after)
            or (
                row_host == host
                and pid is not None
                and (age is None or age > dead_pid_after)
                and not pid_alive(pid)
            )
        ):
            dead.setdefault(owner, (last_seen or now, []))[1].append(row_id)

    closed = 0
    for owner, (ended, ids) in dead.items():
        message = (
            f"scheduler {owner} stopped while this run was in progress (process ended or "
            f"lost); closed by {me}"
        )
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with engine.begin() as conn:
                result = conn.execute(
                    history.update()
                    .where(history.c.id.in_(chunk), history.c.status == RUNNING)
                    .values(status=FAILED, finished_at=ended, error_message=message)
                )
                closed += max(result.rowcount or 0, 0)
    if closed:
        log.warning(
            "closed %d runs left `running` by schedulers that are gone (%s)",
            closed,
            ", ".join(sorted(dead)),
        )
    return closed


def prune_history(
    engine: sa.Engine, history: sa.Table, *, older_than: timedelta, batch: int = 500
) -> int:
    """Delete one batch of finished rows older than `older_than`; returns how many went."""
    cutoff = utcnow() - older_than
    old = sa.or_(
        history.c.finished_at < cutoff,
        sa.and_(history.c.finished_at.is_(None), history.c.scheduled_run_time < cutoff),
    )
    with engine.begin() as conn:
        ids = (
            conn.execute(
                sa.select(history.c.id)
                .where(history.c.status != RUNNING, old)
                .order_by(history.c.id)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if ids:
            conn.execute(history.delete().where(history.c.id.in_(ids)))
    return len(ids)


def prune_heartbeats(engine: sa.Engine, heartbeats: sa.Table, *, older_than: timedelta) -> int:
    """Forget schedulers not seen for `older_than`."""
    with engine.begin() as conn:
        result = conn.execute(
            heartbeats.delete().where(heartbeats.c.last_seen < utcnow() - older_than)
        )
    return max(result.rowcount or 0, 0)
