"""`[[probes]]`, `[quality]` and `[traceroute]`: the tables of the probes package."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ValidationInfo, field_validator, model_validator

from agent.config import CarrierConfig, Config, Section, problem
from agent.config.base import context_value, from_toml
from agent.config.carriers import unique_name
from agent.config.types import (
    ARRAY_OF_TABLES,
    Bool,
    NonEmptyStr,
    Pct,
    PositiveNumber,
    StrList,
    Target,
    choice,
    duration,
    int_range,
    to_str_list,
)
from agent.registry import Table


def to_methods(value: Any) -> tuple[str, ...]:
    """Method strings, checked by the one parser the probes use (methods.py)."""
    from collectors.probes.methods import parse_method

    methods = to_str_list(value)
    if not methods:
        raise ValueError("at least one method is needed")
    for method in methods:
        try:
            parse_method(method)
        except ValueError:
            raise ValueError(
                f"unknown method {method!r} (icmp, tcp:PORT, dns[:QNAME], http[:PATH])"
            ) from None
    return methods


class ProbeConfig(Section):
    name: NonEmptyStr
    target: Target
    methods: tuple[str, ...] = ("icmp",)
    interval_s: Annotated[float, duration(0.1, 86400)] = 10.0
    count: Annotated[int, int_range(1, 10000)] = 10
    timeout_s: Annotated[float, duration(0.001, 60)] = 1.0
    carriers: StrList = ("*",)
    traceroute: Bool = False

    @field_validator("name")
    @classmethod
    def _unique(cls, name: str, info: ValidationInfo) -> str:
        return unique_name(name, info, "probe")

    @field_validator("methods", mode="plain")
    @classmethod
    def _methods(cls, value: Any) -> tuple[str, ...]:
        return to_methods(value)

    @field_validator("carriers")
    @classmethod
    def _known_carriers(cls, carriers: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if from_toml(info):
            known = context_value(info, "carrier_names", set())
            for carrier in carriers:
                if carrier != "*" and carrier not in known:
                    raise ValueError(f"unknown carrier {carrier!r}")
        return carriers


Probes = Annotated[tuple[ProbeConfig, ...], ARRAY_OF_TABLES]


class QualityConfig(Section):
    rtt_degraded_ms: PositiveNumber = 100.0
    loss_degraded_pct: Pct = 2.0
    loss_down_pct: Pct = 50.0
    jitter_degraded_ms: PositiveNumber = 30.0

    @model_validator(mode="after")
    def _levels(self) -> QualityConfig:
        if self.loss_degraded_pct > self.loss_down_pct:
            raise problem("loss_degraded_pct", "must not exceed loss_down_pct")
        return self


class TracerouteConfig(Section):
    interval_s: Annotated[float, duration(1, 86400)] = 300.0
    method: Annotated[str, choice("icmp", "udp")] = "icmp"
    max_hops: Annotated[int, int_range(1, 64)] = 30
    timeout_s: Annotated[float, duration(0.01, 10)] = 1.0


def probe_carriers(config: Config, probe: ProbeConfig) -> tuple[CarrierConfig, ...]:
    """The carriers a probe goes through (`*`: all of them)."""
    if "*" in probe.carriers:
        return config.carriers
    return tuple(c for c in config.carriers if c.name in probe.carriers)


# The tables this package owns, and what its group reads (its reload slice).
TABLES = {
    "probes": Table(Probes, ()),
    "quality": Table(QualityConfig, QualityConfig()),
    "traceroute": Table(TracerouteConfig, TracerouteConfig()),
}
READS = ("agent.interval_s", "agent.control_socket", "carriers", "probes", "quality",
         "traceroute")
