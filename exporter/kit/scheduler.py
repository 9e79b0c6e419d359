"""`instrument()` and `create_scheduler()`: the two calls an app makes."""

from __future__ import annotations

import atexit
import contextlib
import inspect
import logging
import os
import socket
import threading
import weakref
from datetime import timedelta
from typing import Any

import apscheduler
import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import BaseScheduler

from exporter.kit.backup import BackupSetting, install_backup_job
from exporter.kit.chores import Task
from exporter.kit.ddl import ensure_tables
from exporter.kit.engine import SQLITE_BUSY_TIMEOUT, create_kit_engine, describe_error, describe_url
from exporter.kit.heartbeat import Heartbeat
from exporter.kit.maintenance import close_orphaned_runs, prune_heartbeats, prune_history
from exporter.kit.recorder import EVENTS, Recorder
from exporter.kit.writer import HistoryWriter
from exporter.shared.tables import heartbeat_table as make_heartbeat_table
from exporter.shared.tables import history_table as make_history_table
from exporter.shared.version import __version__

log = logging.getLogger("exporter.kit")

_recorders: weakref.WeakKeyDictionary[BaseScheduler, Recorder] = weakref.WeakKeyDictionary()
_ids_lock = threading.Lock()
_ids_in_use: set[str] = set()  # default scheduler ids of this process's live recorders


def _default_scheduler_id(host: str, pid: int) -> str:
    """`host:pid`; `host:pid:2`, ... while other schedulers of this process are instrumented."""
    with _ids_lock:
        candidate, n = f"{host}:{pid}", 1
        while candidate in _ids_in_use:
            n += 1
            candidate = f"{host}:{pid}:{n}"
        _ids_in_use.add(candidate)
    return candidate


def _release_scheduler_id(scheduler_id: str) -> None:
    with _ids_lock:
        _ids_in_use.discard(scheduler_id)


def get_recorder(scheduler: BaseScheduler) -> Recorder | None:
    """The recorder `instrument()` attached to `scheduler`, if any."""
    return _recorders.get(scheduler)


def instrument(
    scheduler: BaseScheduler,
    database_url_or_engine: str | sa.URL | sa.Engine,
    *,
    jobstore: str | None = "default",
    history_table: str = "job_execution",
    heartbeat_table: str | None = "scheduler_heartbeat",
    schema: str | None = None,
    retention_days: float | None = 30,
    heartbeat_interval: float | None = 5.0,
    scheduler_id: str | None = None,
    stale_after: float = 60.0,
    max_pending: int = 10_000,
    batch_size: int = 500,
    shutdown_timeout: float = 5.0,
    retention_interval: float = 3600.0,
    max_traceback_chars: int = 8_000,
) -> Recorder:
    """Record every run of `scheduler` in the history table and write its heartbeats.

    Works on any APScheduler 3 scheduler, started or not. Runs of jobs in the job store named
    `jobstore` are recorded (`None`: every store). Nothing here touches the database: the
    writer thread creates missing tables, closes runs that crashed schedulers left `running`,
    then writes rows, heartbeats every `heartbeat_interval` seconds (`None`: no heartbeats) and
    prunes finished rows older than `retention_days` (`None`: keep everything).
    `scheduler.shutdown()` writes the final rows and a `stopped` heartbeat before it returns
    (waiting at most `shutdown_timeout` seconds for the database).
    """
    if scheduler in _recorders:
        raise RuntimeError("this scheduler is already instrumented")

    if isinstance(database_url_or_engine, sa.Engine):
        engine, owns_engine = database_url_or_engine, False
    else:
        engine, owns_engine = create_kit_engine(database_url_or_engine), True
    where = describe_url(engine.url)

    metadata = sa.MetaData()
    history = make_history_table(metadata, history_table, schema)
    heartbeats = (
        make_heartbeat_table(metadata, heartbeat_table, schema) if heartbeat_table else None
    )
    tables = [history] + ([heartbeats] if heartbeats is not None else [])

    host = socket.gethostname()
    pid = os.getpid()
    default_id = scheduler_id is None
    scheduler_id = scheduler_id or _default_scheduler_id(host, pid)
    beats_every = heartbeat_interval if heartbeats is not None else None

    heartbeat = None
    if heartbeats is not None and beats_every:
        heartbeat = Heartbeat(
            scheduler,
            heartbeats,
            scheduler_id=scheduler_id,
            host=host,
            pid=pid,
            version=f"jobstore-exporter/{__version__} apscheduler/{apscheduler.__version__}",
        )
    dead_pid_after = 3 * beats_every if beats_every else 0.0

    def recover(include_own: bool) -> int:
        return close_orphaned_runs(
            engine,
            history,
            heartbeats,
            me=scheduler_id,
            host=host,
            include_own=include_own,
            stale_after=stale_after,
            dead_pid_after=dead_pid_after,
        )

    def startup() -> None:
        ensure_tables(engine, tables)
        # Before this process writes its first row, so its own id's `running` rows are stale.
        try:
            recover(include_own=True)
        except Exception as exc:  # noqa: BLE001 - recovery is retried by the periodic sweep
            log.warning("could not close stale runs in %s: %s", where, describe_error(exc, engine))
        if heartbeat is not None:
            with contextlib.suppress(Exception):  # the heartbeat task reports failures
                heartbeat.beat(engine)

    writer = HistoryWriter(
        engine,
        history,
        max_pending=max_pending,
        batch_size=batch_size,
        startup=startup,
        repair=lambda: ensure_tables(engine, tables),
        describe=where,
    )
    heartbeat_task = None
    if heartbeat is not None and beats_every:
        heartbeat_task = Task("heartbeat", beats_every, heartbeat.beat, delay=beats_every)
        writer.tasks.append(heartbeat_task)

    # Retention and the sweep for other schedulers' orphaned runs run while this one does.
    def scheduler_up() -> bool:
        return bool(scheduler.running)

    def sweep(_engine: sa.Engine) -> bool:
        recover(include_own=False)
        return False

    sweep_every = max(stale_after / 2, 5.0)
    writer.tasks.append(
        Task("closing stale runs", sweep_every, sweep, delay=sweep_every, active=scheduler_up)
    )
    retention_task: Task | None = None
    if retention_days is not None:
        keep = timedelta(days=retention_days)

        def retention(e: sa.Engine) -> bool:
            more = prune_history(e, history, older_than=keep) > 0
            if not more and heartbeats is not None:
                prune_heartbeats(e, heartbeats, older_than=keep)
            return more

        retention_task = Task(
            "history retention", retention_interval, retention, active=scheduler_up
        )
        writer.tasks.append(retention_task)

    def started() -> None:
        if heartbeat is not None:
            heartbeat.scheduler_started()
        writer.start()
        if heartbeat_task is not None:
            writer.run_soon(heartbeat_task)
        if retention_task is not None:
            writer.run_soon(retention_task)

    def state_changed() -> None:
        if heartbeat_task is not None:
            writer.run_soon(heartbeat_task)

    def stopped(timeout: float) -> None:
        state_changed()  # the scheduler reports STOPPED now: the beat writes `stopped`
        if not writer.flush(timeout):
            log.warning(
                "history not fully written to %s within %.1f s of shutdown (%d rows pending)",
                where,
                timeout,
                writer.stats().pending,
            )

    recorder = Recorder(
        scheduler,
        writer,
        jobstore=jobstore,
        scheduler_id=scheduler_id,
        host=host,
        pid=pid,
        max_traceback_chars=max_traceback_chars,
        shutdown_timeout=shutdown_timeout,
        on_started=started,
        on_state_change=state_changed,
        on_stopped=stopped,
    )
    recorder.heartbeat = heartbeat
    recorder.heartbeat_task = heartbeat_task
    recorder.owns_engine = owns_engine
    _recorders[scheduler] = recorder
    if default_id:
        recorder.on_close.append(lambda: _release_scheduler_id(scheduler_id))

    scheduler.add_listener(recorder.on_event, EVENTS)
    recorder.instrument_executors()
    if scheduler.running and heartbeat is not None:
        heartbeat.scheduler_started()
    writer.start()
    _at_exit(recorder)
    log.info(
        "recording job history of %s in %s (table %s%s, scheduler id %s)",
        f"job store {jobstore!r}" if jobstore else "all job stores",
        where,
        f"{schema}." if schema else "",
        history_table,
        scheduler_id,
    )
    return recorder


def _at_exit(recorder: Recorder) -> None:
    """Close the recorder at interpreter exit (unless it is closed before)."""
    ref = weakref.ref(recorder)

    def close_at_exit() -> None:
        live = ref()
        if live is not None:
            live.close()

    atexit.register(close_at_exit)
    recorder.on_close.append(lambda: atexit.unregister(close_at_exit))
    recorder.on_close.append(lambda: _recorders.pop(recorder.scheduler, None))


def create_scheduler(
    database_url: str | sa.URL | sa.Engine | None = None,
    *,
    jobstore: str = "default",
    jobs_table: str = "apscheduler_jobs",
    backup: BackupSetting = None,
    **options: Any,
) -> AsyncIOScheduler:
    """An AsyncIOScheduler with a persistent job store, history recording and heartbeats.

    The job store is a `SQLAlchemyJobStore` (table `jobs_table`) on `database_url`, or on
    `$DATABASE_URL` when none is given; without either it keeps jobs in memory (and records no
    history: there is nowhere to write it). `postgresql://` URLs use psycopg 3 and `mysql://` or
    `mariadb://` URLs PyMySQL unless they name a driver. A SQLite file is switched to WAL mode
    with a busy timeout, so a reader holding a lock cannot stall the scheduler.

    Keywords that `instrument()` takes (`history_table`, `schema`, `retention_days`,
    `heartbeat_interval`, ...) configure the recorder; the rest go to `AsyncIOScheduler`.

    `backup` installs the daily `database_backup` job (see `register_backup_job`): a directory,
    a dict of `register_backup_job` keywords, `True`, or `False`. The default (`None`) installs
    it only when `$JOBSTORE_EXPORTER_BACKUP_DIR` is set: there is no safe directory to guess.
    """
    kit_options = {k: options.pop(k) for k in list(options) if k in _INSTRUMENT_OPTIONS}
    if database_url is None:
        database_url = os.environ.get("DATABASE_URL") or None
    if database_url is None:
        scheduler = AsyncIOScheduler(**options)
        log.info("Scheduler running in memory mode (no database configured; no job history)")
        install_backup_job(scheduler, None, backup, jobstore=jobstore)
        return scheduler

    if isinstance(database_url, sa.Engine):
        engine = database_url
        if engine.dialect.name == "sqlite":
            _sqlite_wal(engine)
    else:
        engine = create_kit_engine(  # maps the app's driver to ours, and logs it
            database_url, sqlite_wal=True, sqlite_busy_timeout=SQLITE_BUSY_TIMEOUT
        )
    stores = dict(options.pop("jobstores", None) or {})
    stores.setdefault(jobstore, SQLAlchemyJobStore(engine=engine, tablename=jobs_table))
    scheduler = AsyncIOScheduler(jobstores=stores, **options)
    log.info("Scheduler using database for job persistence: %s", describe_url(engine.url))
    instrument(scheduler, engine, jobstore=jobstore, **kit_options)
    install_backup_job(scheduler, engine, backup, jobstore=jobstore)
    return scheduler


_INSTRUMENT_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(instrument).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "jobstore"
)


def _sqlite_wal(engine: sa.Engine) -> None:
    """WAL mode and a busy timeout for an app-provided SQLite engine."""
    busy_ms = int(SQLITE_BUSY_TIMEOUT * 1000)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        finally:
            cursor.close()

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except Exception as exc:  # noqa: BLE001
        log.warning("could not switch %s to WAL mode: %s", describe_url(engine.url), exc)
