"""Configuration: the TOML file (docs/configuration.md) into typed, validated pydantic models.

One module per concern: base.py (the table base model), types.py (durations, sizes,
addresses...), agent.py, carriers.py, outputs.py, alerts.py (the core's tables), root.py
(the whole file, composed with the tables collectors register through agent/registry.py)
and loading.py (reading a file, errors as `FILE: key.path: reason`, all at once).
A collector's own table is in its package (e.g. collectors/links/config.py).
"""

from agent.config.agent import AgentConfig
from agent.config.alerts import AlertRule, AlertsConfig
from agent.config.base import Section, problem
from agent.config.carriers import CarrierBgpConfig, CarrierConfig
from agent.config.loading import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    default_config_path,
    load_config,
    parse_config,
    secret_file_keys,
    secret_file_warnings,
)
from agent.config.outputs import (
    AlertmanagerConfig,
    InfluxDBConfig,
    InfluxDBv1Config,
    OutputsConfig,
    PrometheusConfig,
    WebhookConfig,
)
from agent.config.root import Config
from agent.config.types import IPAddress, IPNetwork, parse_duration, parse_size, valid_target

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AgentConfig",
    "AlertRule",
    "AlertmanagerConfig",
    "AlertsConfig",
    "CarrierBgpConfig",
    "CarrierConfig",
    "Config",
    "ConfigError",
    "IPAddress",
    "IPNetwork",
    "InfluxDBConfig",
    "InfluxDBv1Config",
    "OutputsConfig",
    "PrometheusConfig",
    "Section",
    "WebhookConfig",
    "default_config_path",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "problem",
    "secret_file_keys",
    "secret_file_warnings",
    "valid_target",
]
