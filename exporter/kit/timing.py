"""The timed run functions: APScheduler's `run_job`, with each run's real start and end.

They are module-level functions because a process pool pickles them by name. In-process they hand
rows straight to the recorder; in a process pool child they send the timings back to the parent
on the events they return (attributes `_RECORDED` and `_TIMING`).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    JobExecutionEvent,
)
from apscheduler.executors.base import run_job
from apscheduler.job import Job

from exporter.kit.rows import (
    FAILED,
    SUCCESS,
    error_message,
    new_run_id,
)

if TYPE_CHECKING:
    from exporter.kit.recorder import Recorder

try:  # APScheduler 3.11
    from apscheduler.executors.base import run_coroutine_job
except ImportError:  # pragma: no cover - APScheduler 3.10
    from apscheduler.executors.base_py3 import run_coroutine_job

log = logging.getLogger("exporter.kit")

# Attributes set on APScheduler's events (plain objects) by the timed run functions.
_RECORDED = "_jobstore_exporter_recorded"  # the recorder has this run's row already
_TIMING = "_jobstore_exporter_timing"  # from a process pool child: (run_id, start, secs, pid, err)


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
