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

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

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
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler

from exporter.kit.chores import Task
from exporter.kit.executors import _executor_kind, _make_submit
from exporter.kit.heartbeat import Heartbeat, utcnow
from exporter.kit.rows import (
    FAILED,
    MISSED,
    RUNNING,
    SKIPPED,
    SUCCESS,
    _from_timestamp,
    _naive_utc,
    error_message,
    new_run_id,
    shorten_traceback,
)
from exporter.kit.timing import _RECORDED, _TIMING, _Clock
from exporter.kit.writer import HistoryWriter, WriterStats

log = logging.getLogger("exporter.kit")

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
