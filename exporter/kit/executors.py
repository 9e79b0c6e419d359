"""Executor instrumentation: which stock executors the recorder can time, and how.

For each stock executor the recorder replaces `_do_submit_job` with a copy that submits the timed
run functions instead of APScheduler's `run_job` (patching `run_job` itself changes nothing:
executors import it by name).
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.debug import DebugExecutor
from apscheduler.executors.pool import BasePoolExecutor, ProcessPoolExecutor
from apscheduler.job import Job
from apscheduler.util import iscoroutinefunction_partial

from exporter.kit.rows import new_run_id
from exporter.kit.timing import timed_run_coroutine_job, timed_run_job

if TYPE_CHECKING:
    from exporter.kit.recorder import Recorder

try:
    from apscheduler.executors.asyncio import AsyncIOExecutor
except ImportError:  # pragma: no cover
    AsyncIOExecutor = None  # type: ignore[assignment,misc]

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
