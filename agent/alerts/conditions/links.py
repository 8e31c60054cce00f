"""Conditions on the uplinks: `uplink_down`, `routing_failed`, `utilization`."""

from __future__ import annotations

from typing import Any

from agent.alerts.conditions.base import (
    Condition,
    _EventGuard,
    _pct,
)
from agent.alerts.engine import AlertEngine, format_duration
from agent.points import Point

_ROUTING_FIELDS = ("route_ok", "gateway_ok", "egress_ok", "route6_ok", "gateway6_ok",
                   "egress6_ok")


class UplinkDown(Condition):
    name = "uplink_down"
    measurements = ("link_event", "link")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.guard = _EventGuard()

    def _describe(self, carrier: str) -> str:
        return (f"The uplink of carrier {carrier} is not passing traffic. Traffic and BGP "
                f"sessions through {carrier} are down; users of {carrier} reach us through "
                "other carriers, if at all.")

    def on_point(self, point: Point) -> None:
        tags = point.tags
        carrier = tags.get("carrier")
        if not carrier:
            return
        interface = tags.get("interface", "")
        extra = {"carrier": carrier, "interface": interface}
        key = (carrier, interface)
        if point.measurement == "link_event":
            state = tags.get("state")
            if state in ("down", "deleted"):
                self.guard.event(key, point.time_ns)
                detail = point.fields.get("detail", state)
                self.set(extra, True, f"uplink {interface} of {carrier} is {state}: {detail}",
                         self._describe(carrier))
            elif state == "up":
                self.guard.event(key, point.time_ns)
                self.set(extra, False)
            return
        oper_up = point.fields.get("oper_up")
        if not isinstance(oper_up, bool) or self.guard.stale(key, point.time_ns):
            return
        carrier_up = point.fields.get("carrier_up")
        why = "carrier lost" if carrier_up is False else "oper down"
        self.set(extra, not oper_up, f"uplink {interface} of {carrier} is down: {why}",
                 self._describe(carrier))


class RoutingFailed(Condition):
    name = "routing_failed"
    measurements = ("link_event", "link")

    def __init__(self, engine: AlertEngine, config: Any) -> None:
        super().__init__(engine, config)
        self.guard = _EventGuard()

    def on_point(self, point: Point) -> None:
        tags = point.tags
        carrier = tags.get("carrier")
        if not carrier:
            return
        interface = tags.get("interface", "")
        extra = {"carrier": carrier, "interface": interface}
        key = (carrier, interface)
        description = (f"Traffic meant to leave through {carrier} may not: its routing "
                       "table, gateway or policy rules are not as configured.")
        if point.measurement == "link_event":
            state = tags.get("state")
            if state == "routing_failed":
                self.guard.event(key, point.time_ns)
                self.set(extra, True, f"routing through {carrier} ({interface}) failed: "
                         f"{point.fields.get('detail', '')}", description)
            elif state == "routing_ok":
                self.guard.event(key, point.time_ns)
                self.set(extra, False)
            return
        fields = point.fields
        checks = [k for k in _ROUTING_FIELDS if k in fields]
        if not checks or self.guard.stale(key, point.time_ns):
            return
        failed = [k for k in checks if fields[k] is False]
        self.set(extra, bool(failed), f"routing through {carrier} ({interface}) failed: "
                 f"{', '.join(failed)} false", description)


class Utilization(Condition):
    name = "utilization"
    measurements = ("link",)

    def on_point(self, point: Point) -> None:
        carrier = point.tags.get("carrier")
        if not carrier:
            return
        rx, tx = point.fields.get("rx_util"), point.fields.get("tx_util")
        values = [v for v in (rx, tx) if isinstance(v, int | float) and not isinstance(v, bool)]
        if not values:
            return
        util = float(max(values))
        interface = point.tags.get("interface", "")
        extra = {"carrier": carrier, "interface": interface}
        hysteresis = self.p("hysteresis_pct") / 100
        for severity, key in (("warning", "warning_pct"), ("critical", "critical_pct")):
            level = self.p(key) / 100
            threshold = level - hysteresis if self.active(extra, severity) else level
            direction = "rx" if rx is not None and float(rx) == util else "tx"
            self.set(
                extra, util >= threshold,
                f"{carrier} uplink {interface} {direction} at {_pct(util)} of its committed "
                f"bandwidth (rx {_pct(float(rx or 0))}, tx {_pct(float(tx or 0))}; "
                f"{severity} level {self.p(key):g} %)",
                f"Traffic on {carrier} has been above {self.p(key):g} % of the commit for "
                f"{format_duration(self.for_s)}: risk of congestion and of a 95th percentile "
                "above the commit.",
                value=util, severity=severity)
