"""turnout's configuration: a Plano config file (v0.1 to v0.4), plus turnout's own extensions.

`load_config` and `parse_config` are the entry points; both raise ConfigError listing every
problem found, and fill `Config.warnings` with what loaded but deserves attention.
"""

from turnout.config.loading import (
    ConfigError,
    load_config,
    parse_config,
    parse_routing_preferences,
)
from turnout.config.schema import Config, ModelProvider, RoutingPreference

__all__ = [
    "Config",
    "ConfigError",
    "ModelProvider",
    "RoutingPreference",
    "load_config",
    "parse_config",
    "parse_routing_preferences",
]
