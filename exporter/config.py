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
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from exporter import dburl

ENV_PREFIX = "JOBSTORE_EXPORTER_"
DEFAULT_PORT = 9814

_config_file: ContextVar[Path | None] = ContextVar("_config_file", default=None)


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the key and the fix."""


_UNSETTABLE = ("db_password", "db_password_file", "db_schema", "backup_dir")
"""Optional store keys that an empty value unsets (TOML has no null: ``schema = ""``)."""


def _none_if_empty(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


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

    @field_validator(*_UNSETTABLE, mode="before")
    @classmethod
    def _empty_unsets(cls, value: Any) -> Any:
        return _none_if_empty(value)


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

    @field_validator(*_UNSETTABLE, mode="before")
    @classmethod
    def _empty_unsets(cls, value: Any) -> Any:
        return _none_if_empty(value)

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
        return (init_settings, _EnvSource(settings_cls), _FileSource(settings_cls))


_LIST_FIELDS = {"include_jobs", "exclude_jobs"}


class _EnvSource(EnvSettingsSource):
    """Environment variables; a list setting may be JSON, one value, or comma-separated values.

    ``JOBSTORE_EXPORTER_INCLUDE_JOBS='flaky_.*'`` is what people write; only a value starting
    with ``[`` is read as JSON.
    """

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        if field_name in _LIST_FIELDS and isinstance(value, str):
            if value.lstrip().startswith('["'):
                try:
                    return super().decode_complex_value(field_name, field, value)
                except ValueError:
                    raise SettingsError(
                        f"{ENV_PREFIX}{field_name.upper()}: not a valid JSON list; write "
                        "'[\"a.*\", \"b\"]', or comma-separated values such as 'a.*,b'"
                    ) from None
            return split_list(value)  # `[ab].*` is a regular expression, not JSON
        return super().decode_complex_value(field_name, field, value)


def split_list(value: str) -> list[str]:
    """``a.*, b{1,3}`` -> ``["a.*", "b{1,3}"]``.

    Commas inside (), [] and {} (and escaped ones) belong to the regular expression, so
    quantifiers and character classes survive the split.
    """
    items: list[str] = []
    current: list[str] = []
    depth = 0
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            depth += (char in "([{") - (char in ")]}")
            depth = max(depth, 0)
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


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
