"""Where plugins tell the core what they bring: collector groups, their config tables and
command-line subcommands.

The core never imports a collector. A plugin package (today one, `collectors`, whose
`__init__` is the only list of collectors) calls `register()` when imported; `load_plugins()`
imports the packages named in PLUGINS once, before the first config is read. The root
config model is then composed from the core's tables and the registered ones
(agent/config/root.py), and the daemon builds each group through its factory.

PLUGINS names the packages instead of discovering them through packaging entry points
(`importlib.metadata`, 6.5 ms a scan here): those exist only once the package is
(re-)installed, so a source tree run before `scripts/setup` would find no collector and
refuse every `[bgp]` as an unknown key. One name in one place is the whole cost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.collector import Built, CollectorContext
    from agent.config import Config

PLUGINS = ("collectors",)


@dataclass(frozen=True)
class Group:
    """One entry of the collector registry."""

    factory: str  # "module:function", called with a CollectorContext, returns a Built
    # The parts of the config the group reads, as attribute paths ("carriers",
    # "agent.control_socket"): its reload slice. A reload keeps the group running while
    # these are unchanged (BGP sessions are not reset, probe series go on).
    reads: tuple[str, ...] = ("agent.interval_s",)


@dataclass(frozen=True)
class Table:
    """A top-level config table a plugin owns: its pydantic type and its value when the file
    does not have it (an instance, None, or () for an array of tables)."""

    annotation: Any
    default: Any


GROUPS: dict[str, Group] = {}
TABLES: dict[str, Table] = {}
# Subcommands of `egress-agent` a plugin adds: name -> "module:function", the function
# taking the CLI's argparse subparsers (agent/cli.py imports it only for a command that is
# not the core's).
COMMANDS: dict[str, str] = {}
_loaded = False


def register(groups: Mapping[str, Group], tables: Mapping[str, Table],
             commands: Mapping[str, str] | None = None) -> None:
    GROUPS.update(groups)
    TABLES.update(tables)
    COMMANDS.update(commands or {})


def load_plugins() -> None:
    """Import the plugin packages once (each registers itself)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in PLUGINS:
            importlib.import_module(name)


def collector_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(GROUPS)


def config_slice(name: str, config: Config) -> tuple[Any, ...]:
    """What the group `name` reads of `config` (compared across a reload)."""
    values = []
    for path in GROUPS[name].reads:
        value: Any = config
        for attribute in path.split("."):
            value = getattr(value, attribute)
        values.append(value)
    return tuple(values)


def build_group(name: str, ctx: CollectorContext) -> Built:
    """What the registry entry `name` makes of ctx.config (nothing when the config gives it
    nothing to do, e.g. `bgp` without a `[bgp]` table)."""
    module_name, _, function = GROUPS[name].factory.partition(":")
    factory: Callable[[CollectorContext], Built] = getattr(
        importlib.import_module(module_name), function)
    return factory(ctx)
