"""The `jobstore-exporter` command: serve (``serve.py``), check, history, demo, backup
(``backup.py``) and --version.

Each command resolves its configuration the same way (flags > environment > file) and turns a
:class:`ConfigError` into one line on stderr and exit code 2, before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from exporter import __version__
from exporter.cli.console import make_console, surely_not_a_terminal
from exporter.cli.options import (
    Command,
    ConfigFile,
    DbPasswordFile,
    DbUrl,
    Group,
    HistoryTable,
    JobsTable,
    Jobstore,
    Schema,
    StatementTimeout,
    err,
    fail,
    load_or_exit,
    pick_store,
    reject_store_flags,
)
from exporter.cli.serve import serve

app = typer.Typer(
    cls=Group,
    name="jobstore-exporter",
    help="Prometheus metrics and health checks for APScheduler job stores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jobstore-exporter {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Prometheus metrics and health checks for APScheduler job stores."""


app.command(cls=Command)(serve)


@app.command(cls=Command)
def check(
    detailed: Annotated[bool, typer.Option("--detailed", help="Show tasks and upcoming runs.")] = (
        False
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a tree.")] = False,
    config: ConfigFile = None,
    db_url: DbUrl = None,
    db_password_file: DbPasswordFile = None,
    jobstore: Jobstore = None,
    jobs_table: JobsTable = None,
    schema: Schema = None,
    statement_timeout: StatementTimeout = None,
) -> None:
    """Check the scheduler's health once. Exit 0 healthy, 1 unhealthy, 2 unreachable/bad config."""
    from exporter.cli.check import exit_code, render_tree, to_json
    from exporter.sidecar.health import assess
    from exporter.sidecar.logs import setup_logging
    from exporter.sidecar.poller import StorePoller

    cfg = load_or_exit(
        config,
        db_url=db_url,
        db_password_file=db_password_file,
        jobstore=jobstore,
        jobs_table=jobs_table,
        db_schema=schema,
        statement_timeout=statement_timeout,
    )
    reject_store_flags(
        cfg,
        **{
            "--db-url": db_url,
            "--db-password-file": db_password_file,
            "--jobs-table": jobs_table,
            "--schema": schema,
        },
    )
    stores = cfg.stores if jobstore is None else (pick_store(cfg.stores, jobstore),)
    setup_logging("error", cfg.secrets)  # the verdict is the output; warnings would clutter it
    results = []
    for store in stores:
        poller = StorePoller(store, with_history=False, with_heartbeats=True)
        try:
            results.append(assess(poller.poll(), cfg.settings.overdue_grace))
        finally:
            poller.close()
    if as_json:
        typer.echo(json.dumps(to_json(results), indent=2))
    else:
        render_tree(results, make_console(), detailed=detailed)
    raise typer.Exit(exit_code(results))


@app.command(cls=Command)
def history(
    job: Annotated[
        str | None, typer.Option("--job", metavar="JOB_ID", help="Only this job id.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="STATUS", help="running, success, failed, missed or skipped."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="SPAN|DATE", help="Window: 24h, 30m, 7d, or an ISO date."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, metavar="N", help="Most recent N runs.")
    ] = 50,
    stats: Annotated[bool, typer.Option("--stats", help="Per-job statistics instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigFile = None,
    db_url: DbUrl = None,
    db_password_file: DbPasswordFile = None,
    jobstore: Jobstore = None,
    history_table: HistoryTable = None,
    schema: Schema = None,
    statement_timeout: StatementTimeout = None,
) -> None:
    """Past executions from the history table (read-only); --stats for per-job figures."""
    from datetime import UTC, datetime

    from exporter.cli import history_report as report
    from exporter.sidecar.db import reader_engine
    from exporter.sidecar.store_errors import explain

    cfg = load_or_exit(
        config,
        db_url=db_url,
        db_password_file=db_password_file,
        jobstore=jobstore,
        history_table=history_table,
        db_schema=schema,
        statement_timeout=statement_timeout,
    )
    if status is not None and status not in report.STATUSES:
        raise fail(f"--status must be one of {', '.join(report.STATUSES)}", 2)
    try:
        window = report.parse_since(since, datetime.now(UTC)) if since else None
    except report.ReportError as exc:
        raise fail(str(exc), 2) from None
    reject_store_flags(
        cfg,
        **{
            "--db-url": db_url,
            "--db-password-file": db_password_file,
            "--history-table": history_table,
            "--schema": schema,
        },
    )
    store = pick_store(cfg.stores, jobstore)
    engine = reader_engine(store.url, store.statement_timeout)
    try:
        with engine.connect() as connection:
            runs = report.query_runs(
                connection, store, job=job, status=status, since=window,
                limit=None if stats else limit,
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback with a URL in it
        message = explain(exc, store, engine, "history")
        raise fail(f"cannot read history: {message}", 2) from None
    finally:
        engine.dispose()
    console = make_console()
    if stats:
        figures = report.job_stats(runs)
        if as_json:
            typer.echo(json.dumps(report.stats_json(figures), indent=2))
        else:
            report.render_stats(figures, console)
    elif as_json:
        typer.echo(json.dumps(report.runs_json(runs), indent=2))
    else:
        report.render_runs(runs, console)


@app.command(cls=Command)
def demo(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", metavar="DIR", help="Where the demo keeps its SQLite file and backups."
        ),
    ] = Path("jobstore-demo"),
    listen_address: Annotated[
        str,
        typer.Option("--listen-address", metavar="HOST:PORT", help="Where the exporter listens."),
    ] = "127.0.0.1:9814",
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", metavar="SECONDS", help="Seconds between polls.")
    ] = 5.0,
) -> None:
    """Run a demo scheduler on SQLite with the exporter beside it, and print the URLs."""
    from exporter.cli.demo import run_demo
    from exporter.sidecar.logs import setup_logging

    setup_logging("info")
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(run_demo(directory, listen_address, poll_interval))
        raise typer.Exit(code)


from exporter.cli.backup import backup_app  # noqa: E402 - after the commands, for --help order

app.add_typer(backup_app, name="backup")


def main() -> None:
    """Console-script entry point.

    On a terminal, Typer reports usage mistakes in its Rich panel. Off a terminal (a probe, a
    log, a pipe) the panel would wrap at 80 columns and split one mistake over several lines,
    so the mistake is reported as one ``jobstore-exporter: ...`` line on stderr instead, with
    the same exit code (2 for a usage error).
    """
    try:
        if not surely_not_a_terminal(sys.stderr) and err.is_terminal:
            app()
            return
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:
        sys.exit(_usage_error(exc))
    except BrokenPipeError:  # e.g. `jobstore-exporter check --json | head`
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> int:
    """Print a Click usage error as one line naming the command and where help is."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())  # `jobstore-exporter` alone: the help, as on a terminal
        return int(getattr(exc, "exit_code", 2))
    format_message = getattr(exc, "format_message", None)
    message = " ".join((format_message() if format_message else str(exc)).split())
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    err.print(f"{where}{message}{hint}", markup=False, soft_wrap=True)
    return int(getattr(exc, "exit_code", 2))
