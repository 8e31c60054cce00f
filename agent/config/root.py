"""The whole file: the core's tables plus those the plugins registered (agent/registry.py).

`Config` is the static part, which the core's code and mypy see; the model that validates a
file is `Config` extended with every registered table (`root_model()`), so a collector's
table lives in its own package (e.g. collectors/links/config.py) and the core imports none.
Code reads a collector's table as an attribute (`config.bgp`), typed in the collector's
package.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, PrivateAttr, create_model

from agent import registry
from agent.config.agent import AgentConfig
from agent.config.alerts import AlertsTable
from agent.config.base import Section
from agent.config.carriers import CarrierConfig
from agent.config.outputs import OutputsConfig
from agent.config.types import ARRAY_OF_TABLES

Carriers = Annotated[tuple[CarrierConfig, ...], ARRAY_OF_TABLES]


class Config(Section):
    agent: AgentConfig = Field(default_factory=AgentConfig)
    carriers: Carriers = ()
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    alerts: AlertsTable = Field(default_factory=AlertsTable)

    _path: str = PrivateAttr(default="<config>")

    if TYPE_CHECKING:
        # The registered tables (`config.bgp`, `config.probes`, ...), typed where they live.
        def __getattr__(self, name: str) -> Any: ...

    @property
    def path(self) -> str:
        """The file this config was read from."""
        return self._path

    def carrier(self, name: str) -> CarrierConfig | None:
        return next((c for c in self.carriers if c.name == name), None)


@cache
def _composed(tables: tuple[str, ...]) -> type[Config]:
    fields: dict[str, Any] = {
        name: (registry.TABLES[name].annotation, registry.TABLES[name].default)
        for name in tables
    }
    model: type[Config] = create_model("Config", __base__=Config, **fields)
    return model


def root_model() -> type[Config]:
    """Config with every registered table (the plugins are loaded first)."""
    registry.load_plugins()
    return _composed(tuple(registry.TABLES))
