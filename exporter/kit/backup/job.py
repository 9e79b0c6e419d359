"""The scheduled job: `register_backup_job`, `run_backup` (what the job store names), its schedule
in words, and the credentials the job reads at run time rather than storing them: the password,
and credentials in the URL's query (`?sslpassword=`...), which APScheduler would otherwise
persist, in clear, in the job's row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.kit.backup.model import (
    BACKUP_DIR_ENV,
    JOB_FUNC,
    JOB_ID,
    JOB_NAME,
    BackupError,
    BackupSetting,
    backend_kind,
)
from exporter.kit.backup.take import backup_database
from exporter.kit.engine import describe_url, normalize_url
from exporter.shared.dburl import secret_query

log = logging.getLogger("exporter.kit.backup")
_T = TypeVar("_T")

_passwords_lock = threading.Lock()
_process_passwords: dict[str, str] = {}
"""Passwords `register_backup_job()` kept in this process, by the job's password-less URL."""
_process_url_secrets: dict[str, dict[str, Any]] = {}
"""Credentials from URL queries (`sslpassword`...) kept in this process, by the same URL."""


def _public_url(url: sa.URL) -> str:
    """The URL without its password and without credentials in its query, as text
    (`URL.set(password=None)` would keep the password)."""
    url = normalize_url(url)
    bare = sa.URL.create(url.drivername, url.username, None, url.host, url.port, url.database)
    secrets = secret_query(url)
    query = {key: value for key, value in url.query.items() if key not in secrets}
    return bare.update_query_dict(query).render_as_string(hide_password=False)


def run_backup(
    *,
    database_url: str,
    backup_dir: str,
    keep: int = 7,
    max_age_days: float | None = None,
    password_env: str | None = None,
    password_file: str | None = None,
    password_in_process: bool = False,
    timeout: float = 3600.0,
    url_secrets_in_process: bool = False,
) -> str:
    """The `database_backup` job: `backup_database()` with the password looked up at run time.

    Returns the new file's path; raises BackupError (after logging it as one line) on failure.
    """
    try:
        url = normalize_url(database_url)
        password = _job_password(url, password_env, password_file, password_in_process)
        if password is not None:
            url = url.set(password=password)
        if url_secrets_in_process:
            url = url.update_query_dict(_job_url_secrets(url))
        result = backup_database(
            url, backup_dir, keep=keep, max_age_days=max_age_days, timeout=timeout
        )
    except (BackupError, ValueError) as exc:
        log.error("database backup failed: %s", exc)
        raise
    return str(result.path)


def _job_password(
    url: sa.URL, env_name: str | None, file_name: str | None, in_process: bool
) -> str | None:
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise BackupError(
                f"cannot read the database password file {file_name}: {exc.strerror or exc}"
            ) from None
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise BackupError(
                f"environment variable {env_name} (the database password) is not set in the "
                "scheduler's process"
            )
        return value
    if not in_process:
        return None
    known = _kept(url, _process_passwords, lambda parsed: parsed.password and str(parsed.password))
    if known:
        return known
    raise BackupError(
        "the database password is not known to this process: call register_backup_job() (or "
        "create_scheduler(backup=...)) at startup in every process that runs the scheduler, or "
        "pass password_env= or password_file="
    )


def _kept(url: sa.URL, kept: Mapping[str, _T], of: Callable[[sa.URL], _T | None]) -> _T | None:
    """What this process kept for the job's URL at registration, else what ``of`` finds in
    ``DATABASE_URL`` when that names the same database."""
    key = _public_url(url)
    with _passwords_lock:
        known = kept.get(key)
    if known is not None:
        return known
    fallback = os.environ.get("DATABASE_URL")
    if fallback:
        with contextlib.suppress(ValueError):
            parsed = normalize_url(fallback)
            found = of(parsed)
            if found and _public_url(parsed) == key:
                return found
    return None


def _job_url_secrets(url: sa.URL) -> dict[str, Any]:
    """The credentials the URL's query had at registration (kept in this process), or those of
    ``DATABASE_URL`` when it names the same database."""
    known = _kept(url, _process_url_secrets, secret_query)
    if known:
        return known
    raise BackupError(
        "the credentials in the database URL's query (such as sslpassword) are not known to "
        "this process: call register_backup_job() (or create_scheduler(backup=...)) at startup "
        "in every process that runs the scheduler"
    )


def register_backup_job(
    scheduler: BaseScheduler,
    *,
    database_url: str | sa.URL | sa.Engine,
    backup_dir: str | os.PathLike[str],
    keep: int = 7,
    hour: int | str = 2,
    minute: int | str = 0,
    every: float | None = None,
    max_age_days: float | None = None,
    password_env: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    jobstore: str = "default",
    job_id: str = JOB_ID,
    name: str = JOB_NAME,
    timezone: str = "UTC",
    misfire_grace_time: int | None = None,
    timeout: float = 3600.0,
    catch_up: bool = True,
) -> Job:
    """Install the daily backup job (`database_backup`, 02:00 UTC by default).

    The job is a cron job with `max_instances=1`, `coalesce=True` and `replace_existing=True`,
    referring to `exporter.kit.backup:run_backup` by name. Its kwargs hold the URL without its
    password; the password comes at run time from `password_file`, else the environment
    variable `password_env`, else this process's memory (kept here by this call, so call it at
    every start, as apps re-register their jobs anyway). Credentials in the URL's query
    (`?sslpassword=`...) are likewise left out of the kwargs and kept in this process's memory.
    `misfire_grace_time=None` means a late run still happens (once, coalesced). With
    `catch_up`, a run the job store shows as missed (its next run time passed while no
    scheduler ran) happens right away instead of being skipped by the re-registration.

    `hour` and `minute` take whatever APScheduler's cron fields take (`2`, `"*"`, `"*/5"`,
    `"1,13"`...). `every` (seconds) replaces the daily cron with an interval, for demos and
    tests that want a backup every few minutes. The log line states the schedule in force.
    """
    trigger = _backup_trigger(hour, minute, every, timezone)
    if keep < 1:
        raise ValueError("keep must be at least 1 (rotation never deletes the newest backup)")
    if max_age_days is not None and max_age_days <= 0:
        raise ValueError("max_age_days must be positive")
    url = database_url.url if isinstance(database_url, sa.Engine) else normalize_url(database_url)
    url = normalize_url(url)
    try:
        kind = backend_kind(url)
    except BackupError as exc:
        raise ValueError(str(exc)) from None
    if kind == "sqlite":
        if url.database in (None, "", ":memory:") or str(url.database).startswith("file:"):
            raise ValueError("back up a SQLite file given as sqlite:///path, not in-memory or URI")
        url = url.set(database=os.path.abspath(url.database))
    password = str(url.password) if url.password else None
    public = _public_url(url)
    in_process = bool(password) and not (password_env or password_file)
    if in_process:
        assert password is not None
        with _passwords_lock:
            _process_passwords[public] = password
    url_secrets = secret_query(url)
    if url_secrets:
        with _passwords_lock:
            _process_url_secrets[public] = url_secrets
    kwargs: dict[str, Any] = {
        "database_url": public,
        "backup_dir": os.path.abspath(os.fspath(backup_dir)),
        "keep": int(keep),
        "max_age_days": max_age_days,
        "password_env": password_env,
        "password_file": os.path.abspath(os.fspath(password_file)) if password_file else None,
        "password_in_process": in_process,
        "timeout": float(timeout),
    }
    if url_secrets:  # only then: the kwargs of a job without them stay as they always were
        kwargs["url_secrets_in_process"] = True
    extra: dict[str, Any] = {}
    if catch_up and _missed_run(scheduler, jobstore, job_id):
        extra["next_run_time"] = datetime.now(UTC)
        log.warning("the %s job missed its run while no scheduler ran: running it now", job_id)
    job = scheduler.add_job(
        JOB_FUNC,
        trigger=trigger,
        id=job_id,
        name=name,
        kwargs=kwargs,
        jobstore=jobstore,
        max_instances=1,
        coalesce=True,
        replace_existing=True,
        misfire_grace_time=misfire_grace_time,
        **extra,
    )
    kept = [
        what for what, held in (("password", in_process), ("URL credentials", url_secrets)) if held
    ]
    log.info(
        "database backup of %s to %s %s, keeping %d%s",
        describe_url(url),
        kwargs["backup_dir"],
        describe_schedule(hour, minute, every, timezone),
        keep,
        f" ({' and '.join(kept)} kept in this process only)" if kept else "",
    )
    return job


def _backup_trigger(
    hour: int | str, minute: int | str, every: float | None, timezone: str
) -> BaseTrigger:
    """The job's trigger, or ValueError naming the bad argument (APScheduler's own check)."""
    if every is not None:
        if isinstance(every, bool) or not every > 0:
            raise ValueError(f"every must be a positive number of seconds, not {every!r}")
        return IntervalTrigger(seconds=float(every), timezone=timezone)
    for name, value in (("hour", hour), ("minute", minute)):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{name} must be an int or a cron expression, not {value!r}")
    try:
        return CronTrigger(hour=hour, minute=minute, timezone=timezone)
    except ValueError as exc:
        raise ValueError(f"hour={hour!r}, minute={minute!r}: {exc}") from None


def describe_schedule(
    hour: int | str, minute: int | str, every: float | None, timezone: str
) -> str:
    """The schedule in words for the log: ``daily at 02:00 UTC``, ``every 300 s``, or the cron
    fields as given (``at hour=* minute=*/5 UTC``) when they are not one time of day."""
    if every is not None:
        return f"every {float(every):g} s"
    if _plain_number(hour) and _plain_number(minute):
        return f"daily at {int(hour):02d}:{int(minute):02d} {timezone}"
    return f"at hour={hour} minute={minute} {timezone}"


def _plain_number(value: int | str) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def _missed_run(scheduler: BaseScheduler, jobstore: str, job_id: str) -> bool:
    """True when the stored job's next run time has passed (read with Core, never unpickled)."""
    store = getattr(scheduler, "_jobstores", {}).get(jobstore)
    if not isinstance(store, SQLAlchemyJobStore):
        return False
    table = store.jobs_t
    try:
        with store.engine.connect() as connection:
            value = connection.execute(
                sa.select(table.c.next_run_time).where(table.c.id == job_id)
            ).scalar_one_or_none()
    except Exception:  # noqa: BLE001 - no table yet, or unreachable: nothing to catch up
        return False
    return value is not None and float(value) < time.time()


def install_backup_job(
    scheduler: BaseScheduler,
    database: sa.Engine | None,
    backup: BackupSetting,
    *,
    jobstore: str = "default",
) -> Job | None:
    """`create_scheduler(backup=...)`: resolve the setting and register the job, or don't.

    `None` (the default): install it when $JOBSTORE_EXPORTER_BACKUP_DIR names a directory.
    `False`: never. `True`: required, directory from that variable. A path: that directory.
    A mapping: keyword arguments of `register_backup_job` (`backup_dir` defaults to the variable).
    """
    if backup is False:
        return None
    from_env = os.environ.get(BACKUP_DIR_ENV) or None
    settings: dict[str, Any]
    if backup is None:
        if from_env is None:
            log.info(
                "no daily database backup: pass create_scheduler(backup='/backups') or set %s",
                BACKUP_DIR_ENV,
            )
            return None
        settings = {"backup_dir": from_env}
    elif backup is True:
        if from_env is None:
            raise ValueError(
                f"backup=True needs a directory: pass backup=DIR or set {BACKUP_DIR_ENV}"
            )
        settings = {"backup_dir": from_env}
    elif isinstance(backup, Mapping):
        settings = dict(backup)
        settings.setdefault("backup_dir", from_env)
        if not settings["backup_dir"]:
            raise ValueError(f"backup needs 'backup_dir' (or {BACKUP_DIR_ENV})")
    else:
        settings = {"backup_dir": os.fspath(backup)}
    if database is None:
        log.warning("backup requested but no database is configured: nothing to back up")
        return None
    settings.setdefault("jobstore", jobstore)
    return register_backup_job(scheduler, database_url=database, **settings)
