"""Options and helpers shared by every `jobstore-exporter` command module.

One definition per flag, so `serve`, `check`, `history` and `backup` spell and explain it the
same way, and one way to fail: a single line on stderr and an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from exporter.cli.console import LazyConsole
from exporter.sidecar.config import Config, ConfigError, StoreConfig, load_config

err = LazyConsole(stderr=True)  # Rich is imported only when something is printed


def _no_value_for_flags(params: list[Any]) -> list[Any]:
    """Flags (``--help``, ``--json``, ``--detailed``) take no value, so their help shows none;
    Typer would print ``<bool>`` beside them. Options with a value say what to type through
    their ``metavar`` (``URL``, ``HOST:PORT``, ``SECONDS``, ``REGEX``...)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Every command of `jobstore-exporter` (``@app.command(cls=Command)``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _no_value_for_flags(super().get_params(ctx))


class Group(TyperGroup):
    """`jobstore-exporter` itself and `jobstore-exporter backup` (``typer.Typer(cls=Group)``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _no_value_for_flags(super().get_params(ctx))


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML or TOML config file (may list several job stores).",
    ),
]
DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        metavar="URL",
        help="Database of the job store (env JOBSTORE_EXPORTER_DB_URL, else DATABASE_URL). "
        "Prefer --db-password-file or JOBSTORE_EXPORTER_DB_PASSWORD to a password in the URL.",
        show_default=False,
    ),
]
DbPasswordFile = Annotated[
    Path | None,
    typer.Option("--db-password-file", metavar="FILE", help="File holding the database password."),
]
Jobstore = Annotated[
    str | None,
    typer.Option(
        "--jobstore",
        metavar="NAME",
        help="Store name: the `jobstore` label (default default); with a config file listing "
        "several stores, the one to use.",
    ),
]
JobsTable = Annotated[
    str | None,
    typer.Option("--jobs-table", metavar="TABLE", help="Job table (default apscheduler_jobs)."),
]
HistoryTable = Annotated[
    str | None,
    typer.Option("--history-table", metavar="TABLE", help="History table (default job_execution)."),
]
Schema = Annotated[
    str | None, typer.Option("--schema", metavar="SCHEMA", help="Schema holding the tables.")
]
BackupJobId = Annotated[
    str | None,
    typer.Option(
        "--backup-job-id", metavar="JOB_ID", help="Backup job id (default database_backup)."
    ),
]
StatementTimeout = Annotated[
    float | None,
    typer.Option("--statement-timeout", metavar="SECONDS", help="Seconds per query (default 10)."),
]
LogLevel = Annotated[
    str | None, typer.Option("--log-level", metavar="LEVEL", help="debug, info, warning or error.")
]


def fail(message: str, code: int) -> typer.Exit:
    """Print ``jobstore-exporter: MESSAGE`` on stderr; raise the returned Exit."""
    err.print(f"jobstore-exporter: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def load_or_exit(config_file: Path | None, **flags: Any) -> Config:
    """The configuration, or exit 2 with its one-line error."""
    try:
        return load_config(config_file, **flags)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None


def pick_store(stores: tuple[StoreConfig, ...], name: str | None) -> StoreConfig:
    """The store a one-store command works on: the only one, or the one named ``--jobstore``."""
    if name is None:
        if len(stores) > 1:
            names = ", ".join(store.name for store in stores)
            raise fail(
                f"config error: jobstore: several stores ({names}); pick one with --jobstore", 2
            )
        return stores[0]
    for store in stores:
        if store.name == name:
            return store
    names = ", ".join(store.name for store in stores)
    raise fail(
        f"config error: --jobstore: no store named {name!r} in the configuration (stores: {names})",
        2,
    )


def reject_store_flags(config: Config, **flags: Any) -> None:
    """Exit 2 when a flag that describes one store meets a config file listing several.

    Each entry of ``jobstores`` sets its own URL and tables, so such a flag would at best apply
    to some entries and silently to none of the others; say so instead of ignoring it.
    """
    if not config.settings.jobstores:
        return
    given = [flag for flag, value in flags.items() if value is not None]
    if given:
        raise fail(
            f"config error: {given[0]} cannot be combined with a config file that lists "
            "jobstores; set it in the store's entry there, and pick the store with --jobstore",
            2,
        )
