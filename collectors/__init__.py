"""Collector registry: adding a collector is one module and one line in REGISTRY.

This is the only list of collectors. Each entry names the group's factory ("module:function",
which takes a CollectorContext and returns a Built: its collectors, control commands and
status sections; nothing when the config gives it nothing to do, e.g. `bgp` without a
`[bgp]` table, so optional sources cost nothing) and what of the config the group reads,
which is its reload slice. TABLES are the config tables the collectors own, each modelled in
its package. Importing this package registers both with the core (agent/registry.py), which
never imports a collector itself.
"""

from __future__ import annotations

from agent.registry import Group, Table, register
from collectors.bgp.config import BgpConfig
from collectors.links.config import BillingConfig, LinksConfig
from collectors.probes.config import Probes, QualityConfig, TracerouteConfig

TABLES: dict[str, Table] = {
    "links": Table(LinksConfig, LinksConfig()),
    "billing": Table(BillingConfig, BillingConfig()),
    "bgp": Table(BgpConfig | None, None),
    "probes": Table(Probes, ()),
    "quality": Table(QualityConfig, QualityConfig()),
    "traceroute": Table(TracerouteConfig, TracerouteConfig()),
}

_INTERVAL = "agent.interval_s"
REGISTRY: dict[str, Group] = {
    "agent": Group("collectors.agent_self:create"),
    "host": Group("collectors.host:create_host"),
    "disk": Group("collectors.host:create_disk"),
    "links": Group("collectors.links.collector:create_links", (_INTERVAL, "carriers", "links")),
    "billing": Group("collectors.links.billing:create_billing",
                     (_INTERVAL, "carriers", "billing")),
    "bgp": Group("collectors.bgp:create", (_INTERVAL, "bgp", "carriers")),
    "probes": Group("collectors.probes.collector:create",
                    (_INTERVAL, "agent.control_socket", "carriers", "probes", "quality",
                     "traceroute")),
}

register(REGISTRY, TABLES)
