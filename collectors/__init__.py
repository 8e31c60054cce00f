"""Collector registry: adding a collector is one module and one line in REGISTRY.

Each entry maps a name of `agent.collectors` to "module:factory". The factory takes a
CollectorContext and returns a list of collectors (empty when the config gives it nothing
to do, e.g. `bgp` without a `[bgp]` table), so optional sources cost nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from agent.collector import Collector, CollectorContext
from agent.config import Config

REGISTRY: dict[str, str] = {
    "agent": "collectors.agent_self:create",
    "host": "collectors.host:create_host",
    "disk": "collectors.host:create_disk",
    "probes": "collectors.probes.collector:create",
    "links": "collectors.links.collector:create_links",
    "billing": "collectors.links.billing:create_billing",
    "bgp": "collectors.bgp:create",
}


# What part of the config each collector group depends on: on reload (SIGHUP) a group whose
# slice did not change keeps running (BGP sessions are not reset, probe series go on).
_SLICES: dict[str, Callable[[Config], object]] = {
    "agent": lambda c: (c.agent.interval_s,),
    "host": lambda c: (c.agent.interval_s,),
    "disk": lambda c: (c.agent.interval_s,),
    "links": lambda c: (c.agent.interval_s, c.carriers, c.links),
    "billing": lambda c: (c.agent.interval_s, c.carriers, c.billing),
    "bgp": lambda c: (c.agent.interval_s, c.bgp, c.carriers),
    "probes": lambda c: (
        c.agent.interval_s, c.agent.control_socket, c.carriers, c.probes, c.quality,
        c.traceroute,
    ),
}


def config_slice(name: str, config: Config) -> object:
    slicer = _SLICES.get(name)
    return slicer(config) if slicer else config


def build_group(name: str, ctx: CollectorContext) -> list[Collector]:
    """The collectors of one registry entry (empty when the config gives it nothing to do)."""
    target = REGISTRY.get(name)
    if target is None:
        return []
    module_name, _, factory_name = target.partition(":")
    factory: Callable[[CollectorContext], list[Collector]] = getattr(
        importlib.import_module(module_name), factory_name
    )
    return factory(ctx)


def build_collectors(ctx: CollectorContext) -> list[Collector]:
    collectors: list[Collector] = []
    for name in ctx.config.agent.collectors:
        collectors.extend(build_group(name, ctx))
    return collectors
