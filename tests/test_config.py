"""Configuration: flags > environment > file > defaults, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.sidecar.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("JOBSTORE_EXPORTER_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)


def test_defaults_match_the_contract() -> None:
    config = load_config(db_url="sqlite:////data/app.sqlite")
    settings = config.settings
    assert settings.listen_address == "0.0.0.0:9814"
    assert settings.poll_interval == 15
    (store,) = config.stores
    assert (store.name, store.jobs_table, store.history_table, store.backup_job_id) == (
        "default",
        "apscheduler_jobs",
        "job_execution",
        "database_backup",
    )
    assert store.schema is None and store.backup_dir is None


def test_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("poll_interval: 3\njobs_table: from_file\nschema: file_schema\n")
    monkeypatch.setenv("JOBSTORE_EXPORTER_DB_URL", "sqlite:////env.sqlite")
    monkeypatch.setenv("JOBSTORE_EXPORTER_POLL_INTERVAL", "7")
    monkeypatch.setenv("JOBSTORE_EXPORTER_SCHEMA", "env_schema")
    config = load_config(file, poll_interval=9.0)
    assert config.settings.poll_interval == 9.0  # flag
    (store,) = config.stores
    assert store.url.database == "/env.sqlite"  # env
    assert store.schema == "env_schema"  # env beats file
    assert store.jobs_table == "from_file"  # file beats default


def test_database_url_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/app")
    assert load_config().stores[0].url.host == "db"
    monkeypatch.setenv("JOBSTORE_EXPORTER_DB_URL", "postgresql://app@other/app")
    assert load_config().stores[0].url.host == "other"


def test_bare_schema_env_var_is_not_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA", "unrelated")
    assert load_config(db_url="sqlite:////a").stores[0].schema is None


@pytest.mark.parametrize("suffix", ["yaml", "toml"])
def test_several_jobstores_inherit_top_level_keys(tmp_path: Path, suffix: str) -> None:
    file = tmp_path / f"c.{suffix}"
    if suffix == "yaml":
        file.write_text(
            "schema: scheduler\njobstores:\n"
            "  - {jobstore: app, db_url: 'postgresql://u@h/app'}\n"
            "  - {jobstore: billing, db_url: 'sqlite:////b.sqlite', schema: null}\n"
        )
    else:
        file.write_text(
            'schema = "scheduler"\n'
            '[[jobstores]]\njobstore = "app"\ndb_url = "postgresql://u@h/app"\n'
            '[[jobstores]]\njobstore = "billing"\ndb_url = "sqlite:////b.sqlite"\n'
            'jobs_table = "jobs"\n'
        )
    stores = load_config(file).stores
    assert [s.name for s in stores] == ["app", "billing"]
    assert stores[0].schema == "scheduler"
    assert stores[0].url.host == "h"


def test_password_file_and_env_never_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-file\n")
    config = load_config(db_url="postgresql://app@db/app", db_password_file=secret)
    (store,) = config.stores
    assert store.url.password == "hunter2-file"
    assert "hunter2" not in store.display_url
    assert "hunter2" not in repr(store) and "hunter2" not in repr(config.settings)
    monkeypatch.setenv("JOBSTORE_EXPORTER_DB_PASSWORD", "hunter2-env")
    assert load_config(db_url="postgresql://app@db/app").stores[0].url.password == "hunter2-env"


@pytest.mark.parametrize(
    ("content", "flags", "expected"),
    [
        ("db_url: sqlite:////x\npoll_interval: -5\n", {}, "poll_interval: Input should be greater"),
        ("db_url: sqlite:////x\npol_interval: 5\n", {}, "pol_interval: unknown setting"),
        ("jobstores:\n  - {jobstore: a}\n", {}, "jobstores[0].db_url: not set"),
        (
            "jobstores:\n  - {jobstore: a, db_url: 'sqlite:////a'}\n"
            "  - {jobstore: a, db_url: 'sqlite:////b'}\n",
            {},
            "jobstore name 'a' is used twice",
        ),
        (
            "db_url: sqlite:////x\nlisten_address: nowhere\n",
            {},
            "listen_address: Value error, expected HOST:PORT",
        ),
        ("jobstores: [1,\n", {}, "invalid YAML at line 2"),
        ("db_url: 'sqlite://'\n", {}, "in-memory SQLite"),
        ("db_url: 'not a url'\n", {}, "db_url: not a database URL"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(
    tmp_path: Path, content: str, flags: dict[str, object], expected: str
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(file, **flags)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_password_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="db_password_file: cannot read .*No such file"):
        load_config(db_url="postgresql://u@h/d", db_password_file=tmp_path / "missing")


@pytest.mark.parametrize("command", ["serve", "check"])
def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, command: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text('db_url = "sqlite:////x"\npoll_interval = "often"\n')
    args = [sys.executable, "-m", "exporter", command, "--config", str(file)]
    if command == "check":
        file.write_text('db_url = "sqlite:////x"\nstatement_timeout = "long"\n')
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("jobstore-exporter: config error: ")
    assert ("poll_interval" if command == "serve" else "statement_timeout") in lines[0]


def test_version_flag() -> None:
    from exporter import __version__

    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"jobstore-exporter {__version__}"


def test_help_shows_the_defaults() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--help"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0
    assert "Seconds between polls (default 15)." in proc.stdout
    assert "Where to listen (default 0.0.0.0:9814)." in proc.stdout
