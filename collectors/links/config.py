"""`[links]` and `[billing]`: the tables of the links package (docs/configuration.md)."""

from __future__ import annotations

from typing import Annotated

from agent.config.base import Section
from agent.config.types import StrList, choice, duration
from agent.registry import Table


class LinksConfig(Section):
    interval_s: Annotated[float | None, duration(0.1, 86400)] = None  # default agent.interval
    include: StrList = ("*",)
    exclude: StrList = ("lo",)


class BillingConfig(Section):
    rate: Annotated[str, choice("max", "rx", "tx")] = "max"
    interval_s: Annotated[float, duration(1, 86400)] = 300.0  # how often `billing` is written


# The tables this package owns, and what each of its groups reads (its reload slice).
TABLES = {
    "links": Table(LinksConfig, LinksConfig()),
    "billing": Table(BillingConfig, BillingConfig()),
}
LINKS_READS = ("agent.interval_s", "carriers", "links")
BILLING_READS = ("agent.interval_s", "carriers", "billing")
