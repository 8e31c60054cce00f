"""`[[carriers]]`: the uplinks, each with its interface, addresses, commit and BGP session.
Every collector reads them; the core owns them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ValidationInfo, field_validator

from agent.config.base import Section, context_value, from_toml
from agent.config.types import Address, NonEmptyStr, PositiveNumber, int_range


class CarrierBgpConfig(Section):
    peer: Address
    peer_as: Annotated[int, int_range(1, 4294967295)]
    local_address: Address
    hold_time_s: Annotated[int, int_range(3, 65535)] = 90


class CarrierConfig(Section):
    name: NonEmptyStr
    interface: NonEmptyStr
    source: Address | None = None
    source6: Address | None = None
    committed_mbps: PositiveNumber | None = None
    # policy-routing table of this carrier (routing checks)
    table: Annotated[int | None, int_range(1, 2**32 - 1)] = None
    bgp: CarrierBgpConfig | None = None

    @field_validator("name")
    @classmethod
    def _unique(cls, name: str, info: ValidationInfo) -> str:
        return unique_name(name, info, "carrier")


def unique_name(name: str, info: ValidationInfo, kind: str) -> str:
    """Names of one array of tables are unique: the names seen so far in this document are
    kept in the validation context (carriers[1].name: duplicate carrier name 'x')."""
    if from_toml(info):
        seen: set[str] = context_value(info, "names").setdefault(kind, set())
        if name in seen:
            raise ValueError(f"duplicate {kind} name {name!r}")
        seen.add(name)
    return name


def carrier_names(data: Any) -> set[str]:
    """The carrier names a TOML document defines, read before it is validated, so a table
    that names carriers (probes) can check them whatever else is wrong."""
    carriers = data.get("carriers") if isinstance(data, dict) else None
    if not isinstance(carriers, list):
        return set()
    return {c["name"] for c in carriers if isinstance(c, dict) and isinstance(c.get("name"), str)}
