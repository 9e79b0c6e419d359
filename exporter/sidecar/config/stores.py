"""From settings to the job stores to poll: each store's URL (password from the URL, the
environment, the file or a password file, never printed), tables, schema and limits.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr, ValidationError
from pydantic_settings import (
    SettingsError,
)

from exporter.shared import dburl
from exporter.sidecar.config.settings import _UNSETTABLE, Settings, StoreSettings
from exporter.sidecar.config.sources import ENV_PREFIX, ConfigError, _config_file


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """A fully resolved job store: what the readers need, with the password inside ``url``."""

    name: str
    url: sa.URL
    jobs_table: str
    history_table: str
    heartbeat_table: str
    schema: str | None
    backup_job_id: str
    backup_dir: Path | None
    statement_timeout: float
    driver_note: str | None = None
    """Set when the configured URL named another driver than the shipped one we use."""
    password_source: str | None = None
    """Which setting supplied the password, for error messages (never the password itself)."""

    @property
    def display_url(self) -> str:
        """The URL for logs and pages: password and credential query values as ``***``."""
        return dburl.display_url(self.url)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in output (scrubbed from error messages)."""
        return dburl.url_secrets(self.url)


@dataclass(frozen=True, slots=True)
class Config:
    settings: Settings
    stores: tuple[StoreConfig, ...]

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for store in self.stores for s in store.secrets)


def load_config(config_file: Path | None = None, **flags: Any) -> Config:
    """Resolve flags (``None`` means "not given"), environment and file into a Config."""
    settings = load_settings(config_file, **flags)
    return Config(settings, _resolve_stores(settings))


def backup_dirs(settings: Settings) -> list[Path]:
    """Each store's ``backup_dir``, without resolving (or requiring) any database URL.

    ``backup list`` needs nothing else, so it must not ask for a ``db_url`` it never uses.
    """
    entries = settings.jobstores if settings.jobstores else [StoreSettings()]
    found: list[Path] = []
    for entry in entries:
        given = entry.model_dump(exclude_unset=True)
        directory = given.get("backup_dir", settings.backup_dir)
        if directory is not None and directory not in found:
            found.append(directory)
    return found


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """The settings from flags, environment and file, before any store is resolved."""
    given = {key: value for key, value in flags.items() if value is not None}
    if "db_schema" not in given and os.environ.get(f"{ENV_PREFIX}SCHEMA"):
        given["db_schema"] = os.environ[f"{ENV_PREFIX}SCHEMA"]
    token = _config_file.set(config_file)
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(_settings_error(exc)) from None
    finally:
        _config_file.reset(token)


def _settings_error(exc: SettingsError) -> str:
    """pydantic-settings' own errors (a value it could not decode), as one line."""
    cause = exc.__cause__
    if isinstance(cause, SettingsError) and str(cause).startswith(ENV_PREFIX):
        return str(cause)  # ours, wrapped by pydantic-settings
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid setting"
    field = re.search(r'field "([^"]+)"', text)
    if field:
        return (
            f"{ENV_PREFIX}{field.group(1).upper()}: cannot read this environment variable; "
            "see docs/configuration.md for its format"
        )
    return text


def format_validation_error(exc: ValidationError) -> str:
    """All problems on one line, each as ``key: what is wrong``, never echoing secret values."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ""
        for item in err["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling; see docs/configuration.md)"
        parts.append(f"{loc or 'config'}: {msg}")
    return "; ".join(parts)


_STORE_KEYS = (
    "jobstore",
    "db_url",
    "db_password",
    "db_password_file",
    "jobs_table",
    "history_table",
    "heartbeat_table",
    "db_schema",
    "backup_job_id",
    "backup_dir",
)


def _resolve_stores(settings: Settings) -> tuple[StoreConfig, ...]:
    entries = settings.jobstores if settings.jobstores else [StoreSettings()]
    stores: list[StoreConfig] = []
    for index, entry in enumerate(entries):
        where = f"jobstores[{index}]." if settings.jobstores else ""
        merged = {key: getattr(settings, key) for key in _STORE_KEYS}
        # Keys the entry sets, even to null (YAML) or "" (TOML), override the top level.
        merged.update(
            {
                key: value
                for key, value in entry.model_dump(exclude_unset=True).items()
                if value is not None or key in _UNSETTABLE
            }
        )
        stores.append(_store_config(merged, where, settings.statement_timeout))
    names = [store.name for store in stores]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"jobstores: the jobstore name {duplicates[0]!r} is used twice; "
            "give each store its own `jobstore` name"
        )
    return tuple(stores)


def _store_config(values: dict[str, Any], where: str, timeout: float) -> StoreConfig:
    raw_url: SecretStr | None = values["db_url"]
    text = raw_url.get_secret_value() if raw_url is not None else os.environ.get("DATABASE_URL")
    if not text:
        raise ConfigError(
            f"{where}db_url: not set; pass --db-url, set {ENV_PREFIX}DB_URL or DATABASE_URL, "
            "or add db_url to the config file"
        )
    try:
        normalized = dburl.normalize(text)
    except dburl.UrlError as exc:
        raise ConfigError(f"{where}db_url: {exc}") from None
    url = normalized.url
    source = "the URL" if url.password else None
    password = _password(values, where)
    if password is not None:
        url = url.set(password=password[0])
        source = password[1]
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError(
            f"{where}db_url: an in-memory SQLite database cannot be shared with a scheduler; "
            "point it at the scheduler's database file"
        )
    return StoreConfig(
        name=values["jobstore"],
        url=url,
        jobs_table=values["jobs_table"],
        history_table=values["history_table"],
        heartbeat_table=values["heartbeat_table"],
        schema=values["db_schema"],
        backup_job_id=values["backup_job_id"],
        backup_dir=values["backup_dir"],
        statement_timeout=timeout,
        driver_note=normalized.driver_note,
        password_source=source,
    )


def _password(values: dict[str, Any], where: str) -> tuple[str, str] | None:
    """The password from db_password or db_password_file, and words naming that setting."""
    secret: SecretStr | None = values["db_password"]
    if secret is not None:
        env = os.environ.get(f"{ENV_PREFIX}DB_PASSWORD")
        if env is not None and env == secret.get_secret_value():
            return env, f"{ENV_PREFIX}DB_PASSWORD"
        return secret.get_secret_value(), f"{where}db_password in the config file"
    path: Path | None = values["db_password_file"]
    if path is None:
        return None
    try:
        return (
            path.read_text(encoding="utf-8").rstrip("\r\n"),
            f"the password file {path} (--db-password-file / db_password_file)",
        )
    except OSError as exc:
        raise ConfigError(
            f"{where}db_password_file: cannot read {path}: {exc.strerror or exc}"
        ) from None
