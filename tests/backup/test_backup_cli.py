"""`jobstore-exporter backup run|list|verify`, and what verification catches per backend."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import Database
from typer.testing import CliRunner

from exporter.cli.app import app
from exporter.kit.backup import backup_database, verify_backup
from exporter.shared.backup_files import backup_name

runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None):
    base: dict[str, str | None] = dict.fromkeys(
        ("DATABASE_URL", "JOBSTORE_EXPORTER_DB_URL", "JOBSTORE_EXPORTER_BACKUP_DIR")
    )  # None: removed from the environment
    return runner.invoke(app, list(args), env={**base, **(env or {})})


def created(db: Database) -> Database:
    engine = sa.create_engine(db.url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY, "
                             "next_run_time FLOAT, job_state TEXT)"))  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO apscheduler_jobs VALUES ('a', 1.0, 'x'), ('b', 2.0, 'y')")
        )
    engine.dispose()
    return db


def test_run_list_verify(any_db: Database, tmp_path: Path):
    db = created(any_db)
    backups = tmp_path / "backups"
    result = cli("backup", "run", "--db-url", db.url, "--backup-dir", str(backups), "--keep", "2")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"backup written: {backups}/")
    (path,) = [p for p in backups.iterdir() if not p.name.startswith(".")]

    listed = cli("backup", "list", "--backup-dir", str(backups), "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert row["file"] == path.name
    assert row["size_bytes"] == path.stat().st_size
    assert row["taken_at"].endswith("Z") and 0 <= row["age_seconds"] < 60
    assert row["state"] == "not checked"

    checked = cli("backup", "list", "--verify", env={"JOBSTORE_EXPORTER_BACKUP_DIR": str(backups)})
    assert checked.exit_code == 0, checked.output
    assert path.name in checked.output and " ok" in checked.output

    verified = cli("backup", "verify", str(path))
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith(f"ok: {path}: ")


def test_run_failure_is_one_line_exit_1(tmp_path: Path):
    result = cli("backup", "run", "--db-url", f"sqlite:///{tmp_path}/missing.sqlite",
                 "--backup-dir", str(tmp_path / "b"))  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"jobstore-exporter: backup failed: SQLite database {tmp_path}/missing.sqlite not found: "
        "check database_url"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--backup-dir", "/tmp/x"], "config error: db_url: not set"),
        (["run", "--db-url", "sqlite:////tmp/a.sqlite"], "config error: backup_dir: not set"),
        (["run", "--db-url", "nonsense", "--backup-dir", "/tmp/x"], "config error: db_url: not a"),
        (["list"], "config error: backup_dir: not set"),
        (["list", "--db-url", "sqlite:////tmp/a.sqlite"], "--db-url: backup list reads only"),
        (["list", "--backup-dir", "/nonexistent/dir"], "cannot list backup_dir /nonexistent/dir"),
    ],
)
def test_bad_configuration_exits_2(args: list[str], message: str):
    result = cli("backup", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"jobstore-exporter: {message}"), lines


def corrupt_sqlite(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 + 100 : len(data) // 2 + 600] = os.urandom(500)
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def test_verify_finds_damage(any_db: Database, tmp_path: Path):
    db = created(any_db)
    engine = sa.create_engine(db.url)
    with engine.begin() as conn:  # enough pages that damage lands inside table data
        conn.execute(sa.text("CREATE TABLE filler (id INTEGER PRIMARY KEY, t VARCHAR(200))"))
        conn.execute(
            sa.text("INSERT INTO filler (id, t) VALUES (:i, :t)"),
            [{"i": i, "t": f"row {i} " * 10} for i in range(2000)],
        )
    engine.dispose()
    good = backup_database(db.url, tmp_path / "b").path
    damaged = tmp_path / good.name
    damaged.write_bytes(good.read_bytes())
    (corrupt_sqlite if good.suffix == ".sqlite" else truncate)(damaged)
    check = verify_backup(damaged)
    assert not check.ok, check
    result = cli("backup", "verify", str(damaged))
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"CORRUPT: {damaged}: ")

    empty = tmp_path / backup_name("app", datetime.now(UTC), good.suffix[1:])
    empty.write_bytes(b"")
    result = cli("backup", "verify", str(empty))
    assert result.exit_code == 1 and "empty file (0 bytes)" in result.output


def test_verify_unusable_input_exits_2(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    for target, message in (
        (tmp_path / "missing.sqlite", "No such file or directory"),
        (tmp_path, "is not a regular file"),
        (tmp_path / "notes.txt", "not a backup this tool knows"),
    ):
        result = cli("backup", "verify", str(target))
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"jobstore-exporter: cannot verify {target}: ")
        assert message in result.output


def test_verify_without_pg_restore_exits_2(tmp_path: Path, monkeypatch):
    dump = tmp_path / "app_20261125T020000Z.dump"
    dump.write_bytes(b"PGDMP" + b"\0" * 100)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("backup", "verify", str(dump), env={"PATH": str(tmp_path)})
    assert result.exit_code == 2
    assert "install the Debian package postgresql-client" in result.output


def test_sql_dump_checks(tmp_path: Path):
    header = "/*M!999999\\- enable the sandbox mode */\n-- MariaDB dump 10.19\n--\n"
    body = "CREATE TABLE `t` (\n  `id` int\n) ENGINE=InnoDB;\nINSERT INTO `t` VALUES\n(1),\n(2);\n"
    trailer = "\n-- Dump completed on 2026-11-25  2:00:01\n"
    cases = {
        header + body + trailer: (True, "1 tables, 1 INSERT statements"),
        header + body: (False, "trailer is missing"),
        header + body[:-4] + trailer: (False, "last statement is incomplete"),
        body + trailer: (False, "no mariadb-dump/mysqldump header"),
        header
        + "DELIMITER ;;\nCREATE TRIGGER x BEGIN\n SET @a = 1;\nEND ;;\nDELIMITER ;\n"
        + body
        + trailer: (True, "1 tables"),
    }
    for n, (text, (ok, detail)) in enumerate(cases.items()):
        path = tmp_path / f"case{n}.sql"
        path.write_text(text)
        check = verify_backup(path)
        assert (check.ok, detail in check.detail) == (ok, True), (text, check)
