"""`jobstore-exporter backup run|list|verify`: the backup job's work, by hand.

``run`` goes through the same function as the scheduled job (``exporter.kit.backup``), so a
backup taken here is named, verified and rotated exactly like the 02:00 one. ``list`` and
``verify`` only read the backup directory; neither needs the database, nor asks for its URL.

Exit codes: ``run`` 0 written, 1 backup failed, 2 bad configuration; ``list`` 0, or 1 with
``--verify`` when a file is corrupt, 2 when the directory is unusable; ``verify`` 0 ok,
1 corrupt or incomplete, 2 the file cannot be judged (missing, unreadable, unknown format, or
the tool to read it is not installed).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from exporter.cli.console import make_console
from exporter.cli.options import (
    Command,
    ConfigFile,
    DbPasswordFile,
    DbUrl,
    Group,
    Jobstore,
    fail,
    load_or_exit,
    pick_store,
    reject_store_flags,
)
from exporter.sidecar.wording import ago, moment, run_duration, size

backup_app = typer.Typer(
    cls=Group,
    name="backup",
    help="Take, list and verify database backups (the database_backup job's work, by hand).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
BackupDir = Annotated[
    Path | None,
    typer.Option(
        "--backup-dir",
        metavar="DIR",
        envvar="JOBSTORE_EXPORTER_BACKUP_DIR",
        help="Directory of the backup files (env JOBSTORE_EXPORTER_BACKUP_DIR).",
        show_default=False,
    ),
]


@backup_app.command("run", cls=Command)
def run(
    config: ConfigFile = None,
    db_url: DbUrl = None,
    db_password_file: DbPasswordFile = None,
    jobstore: Jobstore = None,
    backup_dir: BackupDir = None,
    keep: Annotated[
        int,
        typer.Option(
            "--keep", min=1, metavar="N", help="Keep the newest N backups of this database."
        ),
    ] = 7,
    max_age_days: Annotated[
        float | None,
        typer.Option(
            "--max-age-days", min=0, metavar="DAYS", help="Also delete backups older than this."
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, metavar="SECONDS", help="Seconds the dump may take."),
    ] = 3600.0,
) -> None:
    """Take one verified backup now, named and rotated like the scheduled job's."""
    from exporter.cli.kit_seam import BackupError, backup_database
    from exporter.sidecar.logs import setup_logging

    cfg = load_or_exit(
        config, db_url=db_url, db_password_file=db_password_file, backup_dir=backup_dir
    )
    reject_store_flags(cfg, **{"--db-url": db_url, "--db-password-file": db_password_file})
    store = pick_store(cfg.stores, jobstore)
    directory = backup_dir or store.backup_dir
    if directory is None:
        raise fail(
            "config error: backup_dir: not set; pass --backup-dir, set "
            "JOBSTORE_EXPORTER_BACKUP_DIR or add backup_dir to the config file",
            2,
        )
    if max_age_days == 0:
        raise fail("config error: --max-age-days must be positive", 2)
    setup_logging("warning", store.secrets)  # rotation problems show; success is printed below
    try:
        result = backup_database(
            store.url, directory, keep=keep, max_age_days=max_age_days, timeout=timeout
        )
    except BackupError as exc:
        raise fail(f"backup failed: {exc}", 1) from None
    removed = f"; removed {len(result.removed)} old backups" if result.removed else ""
    typer.echo(
        f"backup written: {result.path} ({size(result.size)}, {result.verification}, "
        f"{run_duration(result.duration)}){removed}"
    )


@backup_app.command("list", cls=Command)
def list_backups(
    backup_dir: BackupDir = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Verify every file now (reads each one).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigFile = None,
    db_url: Annotated[str | None, typer.Option("--db-url", hidden=True)] = None,
    db_password_file: Annotated[Path | None, typer.Option("--db-password-file", hidden=True)] = (
        None
    ),
) -> None:
    """Backup files, newest first: UTC time, age, size and (with --verify) their state."""
    from exporter.cli import kit_seam as kit
    from exporter.sidecar.config import ConfigError, backup_dirs, load_settings

    for flag, value in (("--db-url", db_url), ("--db-password-file", db_password_file)):
        if value is not None:  # accepted once; refused now rather than silently unused
            raise fail(f"{flag}: backup list reads only the backup directory; drop {flag}", 2)
    if backup_dir is not None:
        directories = [backup_dir]
    else:
        # Only the directory is needed: never ask for a database URL here.
        try:
            directories = backup_dirs(load_settings(config))
        except ConfigError as exc:
            raise fail(f"config error: {exc}", 2) from None
        if not directories:
            raise fail(
                "config error: backup_dir: not set; pass --backup-dir, set "
                "JOBSTORE_EXPORTER_BACKUP_DIR or add backup_dir to the config file",
                2,
            )
    now = time.time()
    rows: list[dict[str, Any]] = []
    for directory in directories:
        try:
            found = kit.list_backups(directory, untrusted=True)
        except OSError as exc:
            raise fail(f"cannot list backup_dir {directory}: {exc.strerror or exc}", 2) from None
        for item in found:
            state, detail = (
                ("untrusted", f"{item.untrusted}; not counted as a backup")
                if item.untrusted
                else ("empty", "0 bytes: a failed backup")
                if item.size == 0
                else ("not checked", "verified when written; --verify checks again")
            )
            if verify and item.size and not item.untrusted:
                try:
                    check = kit.verify_backup(item.path)
                    state, detail = ("ok" if check.ok else "corrupt"), check.detail
                except (kit.UnusableBackup, kit.MissingTool) as exc:
                    state, detail = "unchecked", str(exc)
            rows.append(
                {
                    "file": item.path.name,
                    "path": str(item.path),
                    "database": item.prefix,
                    "kind": item.kind,
                    "taken_at": item.taken_at.isoformat().replace("+00:00", "Z"),
                    "age_seconds": round(now - item.taken_at.timestamp(), 1),
                    "size_bytes": item.size,
                    "state": state,
                    "detail": detail,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _render(rows, directories)
    if verify and any(row["state"] in ("corrupt", "empty") for row in rows):
        raise typer.Exit(1)


def _render(rows: list[dict[str, Any]], directories: list[Path]) -> None:
    """One line per file; on a terminal a long state detail is cut with "…" to fit."""
    from rich.table import Table  # here: `serve` imports this module and never prints a table
    from rich.text import Text

    console = make_console()
    if not rows:
        console.print(f"no backup files in {', '.join(map(str, directories))}", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("file", "taken (UTC)", "age", "size"):
        right = column in ("age", "size")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "file")
    table.add_column("state", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in rows:
        taken = datetime.fromisoformat(row["taken_at"]).astimezone(UTC)
        state = (
            row["state"]
            if row["state"] in ("ok", "not checked")
            else (f"{row['state']}: {row['detail']}")
        )
        table.add_row(
            Text(row["file"]),
            moment(taken),
            ago(row["age_seconds"]),
            size(row["size_bytes"]),
            Text(state),
        )
    console.print(table)


@backup_app.command("verify", cls=Command)
def verify_file(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A backup file (.sqlite, .dump or .sql).")
    ],
) -> None:
    """Check one backup file: exit 0 ok, 1 corrupt or incomplete, 2 cannot be checked."""
    from exporter.cli.kit_seam import MissingTool, UnusableBackup, verify_backup

    try:
        check = verify_backup(file)
    except (UnusableBackup, MissingTool) as exc:
        raise fail(f"cannot verify {file}: {exc}", 2) from None
    if check.ok:
        typer.echo(f"ok: {file}: {check.detail}")
        return
    typer.echo(f"CORRUPT: {file}: {check.detail}")
    raise typer.Exit(1)
