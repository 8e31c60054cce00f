"""Collector registry: adding a collector is one module and one line in REGISTRY.

This is the only list of collectors. Each entry names the group's factory ("module:function",
which takes a CollectorContext and returns a Built: its collectors, control commands and
status sections; nothing when the config gives it nothing to do, e.g. `bgp` without a
`[bgp]` table, so optional sources cost nothing) and what of the config the group reads,
which is its reload slice, declared with its config tables in the package's config.py.
Importing this package registers both with the core (agent/registry.py), which
never imports a collector itself.
"""

from __future__ import annotations

from agent.registry import Group, register
from collectors.bgp import config as bgp
from collectors.links import config as links
from collectors.probes import config as probes

REGISTRY: dict[str, Group] = {
    "agent": Group("collectors.agent_self:create"),
    "host": Group("collectors.host:create_host"),
    "disk": Group("collectors.host:create_disk"),
    "links": Group("collectors.links.collector:create_links", links.LINKS_READS),
    "billing": Group("collectors.links.billing:create_billing", links.BILLING_READS),
    "bgp": Group("collectors.bgp:create", bgp.READS),
    "probes": Group("collectors.probes.collector:create", probes.READS),
}

# `egress-agent` subcommands of the collector packages ("module:function" adding subparsers).
COMMANDS: dict[str, str] = {"probes": "collectors.probes.cli:add_commands"}

register(REGISTRY, {**links.TABLES, **bgp.TABLES, **probes.TABLES}, COMMANDS)
