"""`jobstore-exporter serve`: the sidecar's command, with every flag of its settings.

Registered on the command line's app in ``cli.py``. Its configuration resolves as every
command's does (flags > environment > file); the same flags are kept for a reload (SIGHUP, or
``POST /-/reload``), which reads the file, environment and password files again.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from exporter.cli.options import (
    BackupJobId,
    ConfigFile,
    DbPasswordFile,
    DbUrl,
    HistoryTable,
    JobsTable,
    Jobstore,
    LogLevel,
    Schema,
    StatementTimeout,
    err,
    load_or_exit,
)
from exporter.sidecar.config import ConfigError, load_config

BackupDir = Annotated[
    Path | None,
    typer.Option(
        "--backup-dir", metavar="DIR", help="Directory of backup files to count and date."
    ),
]


def serve(
    config: ConfigFile = None,
    db_url: DbUrl = None,
    db_password_file: DbPasswordFile = None,
    jobstore: Jobstore = None,
    jobs_table: JobsTable = None,
    history_table: HistoryTable = None,
    schema: Schema = None,
    backup_job_id: BackupJobId = None,
    backup_dir: BackupDir = None,
    statement_timeout: StatementTimeout = None,
    log_level: LogLevel = None,
    listen_address: Annotated[
        str | None,
        typer.Option(
            "--listen-address", metavar="HOST:PORT", help="Where to listen (default 0.0.0.0:9814)."
        ),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            "--poll-interval", metavar="SECONDS", help="Seconds between polls (default 15)."
        ),
    ] = None,
    web_config_file: Annotated[
        Path | None,
        typer.Option(
            "--web-config-file",
            metavar="FILE",
            help="TLS, client certificate and basic auth settings (exporter-toolkit format).",
        ),
    ] = None,
    include_job: Annotated[
        list[str] | None,
        typer.Option(
            "--include-job", metavar="REGEX", help="Regex of job ids to export (repeatable)."
        ),
    ] = None,
    exclude_job: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-job", metavar="REGEX", help="Regex of job ids not to export (repeatable)."
        ),
    ] = None,
    max_jobs: Annotated[
        int | None,
        typer.Option("--max-jobs", metavar="N", help="Per-job series cap (default 20000)."),
    ] = None,
    web_header_timeout: Annotated[
        float | None,
        typer.Option(
            "--web-header-timeout",
            metavar="SECONDS",
            help="Time a client has to send its request headers, TLS handshake included "
            "(default 10).",
            show_default=False,
        ),
    ] = None,
    web_idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--web-idle-timeout",
            metavar="SECONDS",
            help="Close a kept-alive connection idle this long, or one whose client stopped "
            "reading its response (default 60).",
            show_default=False,
        ),
    ] = None,
    web_max_connections: Annotated[
        int | None,
        typer.Option(
            "--web-max-connections",
            metavar="N",
            help="Most open client connections (default 256).",
            show_default=False,
        ),
    ] = None,
    enable_lifecycle: Annotated[
        bool | None,
        typer.Option(
            "--enable-lifecycle",
            help="Serve POST /-/reload (off by default; SIGHUP always reloads).",
            show_default=False,
        ),
    ] = None,
    hide_run_errors: Annotated[
        bool | None,
        typer.Option(
            "--hide-run-errors",
            help="Keep stored error text (tracebacks may hold personal data) off the web pages "
            "and their JSON.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the sidecar: poll the job store and serve /metrics."""
    from exporter.sidecar.logs import setup_logging
    from exporter.sidecar.serving.server import serve as run_server

    flags: dict[str, Any] = {
        "db_url": db_url,
        "db_password_file": db_password_file,
        "jobstore": jobstore,
        "jobs_table": jobs_table,
        "history_table": history_table,
        "db_schema": schema,
        "backup_job_id": backup_job_id,
        "backup_dir": backup_dir,
        "statement_timeout": statement_timeout,
        "log_level": log_level,
        "listen_address": listen_address,
        "poll_interval": poll_interval,
        "web_config_file": web_config_file,
        "include_jobs": include_job or None,
        "exclude_jobs": exclude_job or None,
        "max_jobs": max_jobs,
        "enable_lifecycle": enable_lifecycle,
        "hide_run_errors": hide_run_errors,
        "web_header_timeout": web_header_timeout,
        "web_idle_timeout": web_idle_timeout,
        "web_max_connections": web_max_connections,
    }
    cfg = load_or_exit(config, **flags)
    web = None
    if cfg.settings.web_config_file is not None:
        from exporter.sidecar.serving.web_config import load_web_config

        try:
            web = load_web_config(cfg.settings.web_config_file)
        except ConfigError as exc:
            err.print(f"jobstore-exporter: config error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
    setup_logging(cfg.settings.log_level, cfg.secrets + (web.secrets if web else ()))
    try:
        # SIGHUP (and POST /-/reload with --enable-lifecycle) read the file, environment and
        # password files again.
        reload = functools.partial(load_config, config, **flags)
        asyncio.run(run_server(cfg, web_config=web, loader=reload))
    except OSError as exc:
        err.print(
            f"jobstore-exporter: cannot listen on {cfg.settings.listen_address}: "
            f"{exc.strerror or exc}; choose another --listen-address",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass
