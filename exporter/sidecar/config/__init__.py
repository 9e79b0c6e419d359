"""Settings: flags beat environment beat the config file beat defaults.

Every setting has a flag, a ``JOBSTORE_EXPORTER_*`` environment variable and a key in an optional
YAML or TOML file. The file may list several job stores under ``jobstores``; top-level store keys
(``schema``, ``jobs_table``...) are defaults for every listed store. Whatever the source, a bad
value becomes one :class:`ConfigError` line naming the key, so ``serve`` and ``check`` can exit 2
with something an operator can act on. Passwords are kept in :class:`sqlalchemy.URL` objects and
``SecretStr`` so that no ``repr`` or log line ever prints one.
"""

from exporter.sidecar.config.settings import Settings, StoreSettings
from exporter.sidecar.config.sources import (
    DEFAULT_PORT,
    ENV_PREFIX,
    ConfigError,
    read_config_file,
    split_list,
)
from exporter.sidecar.config.stores import (
    Config,
    StoreConfig,
    backup_dirs,
    format_validation_error,
    load_config,
    load_settings,
)

__all__ = [
    "DEFAULT_PORT",
    "ENV_PREFIX",
    "Config",
    "ConfigError",
    "Settings",
    "StoreConfig",
    "StoreSettings",
    "backup_dirs",
    "format_validation_error",
    "load_config",
    "load_settings",
    "read_config_file",
    "split_list",
]
