"""Settings: flags beat environment beat the config file beat defaults.

Every setting has a flag, a ``JOBSTORE_EXPORTER_*`` environment variable and a key in an optional
YAML or TOML file. The file may list several job stores under ``jobstores``; top-level store keys
(``schema``, ``jobs_table``...) are defaults for every listed store. Whatever the source, a bad
value becomes one :class:`ConfigError` line naming the key, so ``serve`` and ``check`` can exit 2
with something an operator can act on. Passwords are kept in :class:`sqlalchemy.URL` objects and
``SecretStr`` so that no ``repr`` or log line ever prints one.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "JOBSTORE_EXPORTER_"
DEFAULT_PORT = 9814

_config_file: ContextVar[Path | None] = ContextVar("_config_file", default=None)


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the key and the fix."""


class StoreSettings(BaseModel):
    """One job store as written in the config file; unset keys inherit the top level."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    jobstore: str | None = None
    db_url: SecretStr | None = None
    db_password: SecretStr | None = None
    db_password_file: Path | None = None
    jobs_table: str | None = None
    history_table: str | None = None
    heartbeat_table: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")
    backup_job_id: str | None = None
    backup_dir: Path | None = None


class Settings(BaseSettings):
    """Top-level settings; the store keys here describe the single store or defaults for many."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", populate_by_name=True, case_sensitive=False
    )

    listen_address: str = f"0.0.0.0:{DEFAULT_PORT}"
    poll_interval: float = Field(default=15.0, gt=0, le=3600)
    max_backoff: float = Field(default=120.0, gt=0)
    statement_timeout: float = Field(default=10.0, gt=0, le=600)
    overdue_grace: float = Field(default=60.0, ge=0)
    include_jobs: list[str] = Field(default_factory=list)
    exclude_jobs: list[str] = Field(default_factory=list)
    max_jobs: int = Field(default=20_000, ge=1)
    heartbeat_timeout: float = Field(default=30.0, gt=0)
    heartbeat_forget_after: float = Field(default=3600.0, gt=0)
    web_config_file: Path | None = None
    # POST /-/reload exists only when asked for, as Prometheus' --web.enable-lifecycle.
    enable_lifecycle: bool = False
    # Connection limits of the HTTP listener (exporter/listener.py, docs/security.md).
    web_header_timeout: float = Field(default=10.0, gt=0, le=3600)
    web_idle_timeout: float = Field(default=60.0, gt=0, le=86400)
    web_max_connections: int = Field(default=256, ge=1, le=1_000_000)
    log_level: str = "info"
    hide_run_errors: bool = False  # keep stored error text off the status and job pages

    jobstore: str = "default"
    db_url: SecretStr | None = None
    db_password: SecretStr | None = None
    db_password_file: Path | None = None
    jobs_table: str = "apscheduler_jobs"
    history_table: str = "job_execution"
    heartbeat_table: str = "scheduler_heartbeat"
    # `schema` in files and JOBSTORE_EXPORTER_SCHEMA (see load_config); an alias here would make
    # pydantic-settings read a bare SCHEMA environment variable.
    db_schema: str | None = None
    backup_job_id: str = "database_backup"
    backup_dir: Path | None = None

    jobstores: list[StoreSettings] | None = None

    @field_validator("listen_address")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT such as 0.0.0.0:{DEFAULT_PORT}, got {value!r}")
        return value

    @field_validator("include_jobs", "exclude_jobs")
    @classmethod
    def _check_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return patterns

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("expected one of debug, info, warning, error")
        return value.lower()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))


class _FileSource(PydanticBaseSettingsSource):
    """The optional ``--config`` file, YAML or TOML by extension, lowest priority but defaults."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ is overridden; pydantic-settings never calls this

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        data = read_config_file(path) if path is not None else {}
        if "schema" in data:
            data["db_schema"] = data.pop("schema")
        return data


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse the config file into a dict, turning every failure into one ConfigError line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {path}: use a .yaml, .yml or .toml file")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"config file {path}: invalid YAML{where}: {problem}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings at the top level")
    return data


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

    @property
    def display_url(self) -> str:
        """The URL for logs and pages: password replaced by ``***``."""
        return self.url.render_as_string(hide_password=True)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in output (scrubbed from error messages)."""
        return (self.url.password,) if self.url.password else ()


@dataclass(frozen=True, slots=True)
class Config:
    settings: Settings
    stores: tuple[StoreConfig, ...]

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for store in self.stores for s in store.secrets)


def load_config(config_file: Path | None = None, **flags: Any) -> Config:
    """Resolve flags (``None`` means "not given"), environment and file into a Config."""
    given = {key: value for key, value in flags.items() if value is not None}
    if "db_schema" not in given and os.environ.get(f"{ENV_PREFIX}SCHEMA"):
        given["db_schema"] = os.environ[f"{ENV_PREFIX}SCHEMA"]
    token = _config_file.set(config_file)
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    finally:
        _config_file.reset(token)
    return Config(settings, _resolve_stores(settings))


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
        merged.update({k: v for k, v in entry.model_dump().items() if v is not None})
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
        url = sa.make_url(text)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises several types; the text may hold a secret
        raise ConfigError(
            f"{where}db_url: not a database URL; expected e.g. sqlite:////data/app.sqlite or "
            "postgresql://user@host/db"
        ) from None
    password = _password(values, where)
    if password is not None:
        url = url.set(password=password)
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
    )


def _password(values: dict[str, Any], where: str) -> str | None:
    secret: SecretStr | None = values["db_password"]
    if secret is not None:
        return secret.get_secret_value()
    path: Path | None = values["db_password_file"]
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"{where}db_password_file: cannot read {path}: {exc.strerror or exc}"
        ) from None
