"""Where settings come from besides flags: the environment (lists as JSON, one value or
comma-separated values) and the optional YAML or TOML file, every failure one ``ConfigError``.
"""

from __future__ import annotations

import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsError,
)

ENV_PREFIX = "JOBSTORE_EXPORTER_"
DEFAULT_PORT = 9814

_config_file: ContextVar[Path | None] = ContextVar("_config_file", default=None)


class ConfigError(Exception):
    """A configuration problem, worded as one line that names the key and the fix."""


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
    import yaml  # here: most runs have no config file, and PyYAML costs 1 MB resident for good

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
