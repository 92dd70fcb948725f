"""Configuration: one TOML file plus secrets from the environment or files -> immutable Settings.

Every problem in a file is collected and reported at once (`ConfigError.errors`), each naming the
file, the key path and the offending value, so an operator fixes a config in one pass. Secret
values never appear in a message or a repr.

The package: `settings.py` the frozen settings and errors; `sections.py` `load_settings` and the
[daemon], [katana], [reconciliation] and [webhooks] sections; `connections.py` the connections,
their locations, pools, filters and credentials; `secret_sources.py` secrets from the environment
or files; `variant_map.py` the variant map CSV; `table.py` the TOML reader and message helpers.
"""

from daemon.config.connections import DEFAULT_API_VERSION, FILTER_KEYS, OLDEST_API_VERSION
from daemon.config.sections import (
    DEFAULT_HTTP_HOST,
    DEFAULT_HTTP_LISTEN,
    DEFAULT_HTTP_PORT,
    DEFAULT_KATANA_KEY_ENV,
    DEFAULT_KATANA_URL,
    DEFAULT_STATE_PATH,
    load_settings,
)
from daemon.config.settings import (
    ConfigError,
    ConnectionSettings,
    DaemonSettings,
    KatanaSettings,
    LocationMapping,
    ReconciliationSettings,
    Settings,
    UnknownConnection,
    WebhookSettings,
)
from daemon.config.variant_map import (
    MAX_PACK_OR_BUFFER,
    VARIANT_MAP_HEADER,
    VARIANT_MAP_OPTIONAL,
    VariantMapFile,
    load_variant_map,
    read_variant_map,
)
from daemon.secrets import Secret

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_HTTP_HOST",
    "DEFAULT_HTTP_LISTEN",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_KATANA_KEY_ENV",
    "DEFAULT_KATANA_URL",
    "DEFAULT_STATE_PATH",
    "FILTER_KEYS",
    "MAX_PACK_OR_BUFFER",
    "OLDEST_API_VERSION",
    "VARIANT_MAP_HEADER",
    "VARIANT_MAP_OPTIONAL",
    "ConfigError",
    "ConnectionSettings",
    "DaemonSettings",
    "KatanaSettings",
    "LocationMapping",
    "ReconciliationSettings",
    "Secret",
    "Settings",
    "UnknownConnection",
    "VariantMapFile",
    "WebhookSettings",
    "load_settings",
    "load_variant_map",
    "read_variant_map",
]
