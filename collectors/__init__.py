"""Collector registry: adding a collector is one module and one line in REGISTRY.

Each entry maps a name of `agent.collectors` to "module:factory". The factory takes a
CollectorContext and returns a list of collectors (empty when the config gives it nothing
to do, e.g. `bgp` without a `[bgp]` table), so optional sources cost nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from agent.collector import Collector, CollectorContext

REGISTRY: dict[str, str] = {
    "agent": "collectors.agent_self:create",
    "host": "collectors.host:create_host",
    "disk": "collectors.host:create_disk",
}


def build_collectors(ctx: CollectorContext) -> list[Collector]:
    collectors: list[Collector] = []
    for name in ctx.config.agent.collectors:
        target = REGISTRY.get(name)
        if target is None:
            continue  # known to config but not built yet in this version
        module_name, _, factory_name = target.partition(":")
        factory: Callable[[CollectorContext], list[Collector]] = getattr(
            importlib.import_module(module_name), factory_name
        )
        collectors.extend(factory(ctx))
    return collectors
