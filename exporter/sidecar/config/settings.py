"""The settings model: every setting with its default and its check, for one store or the top level
(whose store keys are defaults for every store the file lists).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from exporter.sidecar.config.sources import DEFAULT_PORT, ENV_PREFIX, _EnvSource, _FileSource

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
    # Connection limits of the HTTP listener (exporter/sidecar/serving/listener.py,
    # docs/security.md).
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
